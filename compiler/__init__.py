"""s4dc: compile diagonal state space models (S4D) from ONNX to Loihi 2.

    import s4dc
    net = s4dc.compile("model.onnx")          # -> s4dc.Network
    y = net.run(x)                             # x: (batch, time, features)
    net.save("net/"); net = s4dc.load("net/")

The names below load on first use (PEP 562), so `import s4dc.ir` or
`import s4dc.errors` does not pull in onnx, the frontend or the targets.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "S4dcError": "s4dc.errors",
    "Network": "s4dc.network",
    "load": "s4dc.network",
    "compile": "s4dc.api",
    "CompileOptions": "s4dc.options",
}

if TYPE_CHECKING:  # for type checkers and editors
    from s4dc.api import compile  # noqa: A004
    from s4dc.errors import S4dcError
    from s4dc.network import Network, load
    from s4dc.options import CompileOptions


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 's4dc' has no attribute '{name}'")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["CompileOptions", "Network", "S4dcError", "__version__", "compile", "load"]
