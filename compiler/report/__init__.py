"""Reports of a compiled network, from its OUT/ folder only.

    from s4dc.report import summary, format_text, write_html
    s = summary("net/")            # JSON-ready dict: layers, placement, quantization, passes, cost estimate
    print(format_text(s))          # terminal tables
    write_html("net/")             # net/report.html: self-contained page (inline SVG, CSS, JS)

Command line: `s4dc report OUT/ [--json] [--html]` (`main(argv)`). The cost
model's constants and assumptions: `s4dc.targets.loihi2.cost` (re-exported as
`s4dc.report.cost`), docs/hardware_model.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from s4dc.atomic import umask_mode
from s4dc.errors import NetworkFormatError, S4dcError, first_line

REPORT_FILE = "report.html"


class ReportError(S4dcError):
    """The report cannot be written (the folder is read-only, the disk is full)."""


def summary(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Everything the report shows as plain data (raises NetworkFormatError
    for a missing or invalid OUT/)."""
    from s4dc.report.data import summary as _summary
    return _summary(out_dir)


def format_text(s: dict[str, Any]) -> str:
    from s4dc.report.text import format_text as _format
    return _format(s)


def render_html(s: dict[str, Any]) -> str:
    from s4dc.report.html import render
    return render(s)


def write_html(out_dir: str | os.PathLike, summary_: dict[str, Any] | None = None) -> Path:
    """Write OUT/report.html (atomically: a temporary file renamed) and return its path."""
    out = Path(out_dir)
    s = summary_ if summary_ is not None else summary(out)
    text = render_html(s)
    path = out / REPORT_FILE
    try:
        fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".html", dir=out)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)  # type: ignore[possibly-undefined]
        except (OSError, UnboundLocalError):
            pass
        raise ReportError(f"{path}: cannot write the report ({e.strerror or e})") from None
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s4dc report",
                                description="Summarize a compiled network: placement, layers, quantization, "
                                            "passes, estimated latency and energy per token.")
    p.add_argument("out", metavar="OUT/", help="folder written by `s4dc MODEL -o OUT/`")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    p.add_argument("--html", action="store_true", help=f"(re)write OUT/{REPORT_FILE}")
    return p


def main(argv: list[str] | None = None) -> int:
    """`s4dc report OUT/ [--json] [--html]`: tables on stdout (or JSON with
    --json); --html rewrites OUT/report.html (and prints only its path unless
    --json is given too). Errors: one line `s4dc: error: ...`, exit status 2."""
    a = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        s = summary(a.out)
        if a.html:
            path = write_html(a.out, s)
            print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)", file=sys.stderr if a.json else sys.stdout)
        if a.json:
            print(json.dumps(s, indent=1, sort_keys=True, default=str))
        elif not a.html:
            print(format_text(s))
    except S4dcError as e:
        print(f"s4dc: error: {e}", file=sys.stderr)
        return e.exit_code
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        # load() checked each file's format; a section the report reads can
        # still hold a value of the wrong shape (an edited placement.json)
        err = NetworkFormatError(f"{a.out}: a file of the folder holds a value the report cannot read "
                                 f"({type(e).__name__}: {first_line(e)}); recompile to rewrite it")
        print(f"s4dc: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # `s4dc report OUT | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


__all__ = ["REPORT_FILE", "ReportError", "format_text", "main", "render_html", "summary", "write_html"]
