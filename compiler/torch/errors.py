"""How s4dc.torch quotes torch's own errors: the innermost cause (torch's
exporters wrap the real one in "Failed to export the model ... step 1/3"),
first line, no ANSI colour codes."""
from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def cause_text(e: BaseException, limit: int = 300) -> str:
    """The first non-empty line of the innermost exception in e's cause chain."""
    seen = set()
    while (e.__cause__ or e.__context__) is not None and id(e) not in seen:
        seen.add(id(e))
        nxt = e.__cause__ or e.__context__
        if not strip_ansi(str(nxt)).strip():
            break
        e = nxt
    lines = [ln.strip() for ln in strip_ansi(str(e)).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    return f"{type(e).__name__}: {text[:limit]}"
