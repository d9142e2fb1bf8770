"""Out-of-tree ops: modules named in $S4DC_PLUGINS are imported before s4dc
compiles, loads or runs a network, so that the registrations they make (an
IR op, its frontend handler, its quantization rule, its float, simulator,
Lava and partition entries; docs/architecture.md) are there in every process,
the Lava environment's included (it inherits the environment).

    S4DC_PLUGINS=my_ops                      # an importable module
    S4DC_PLUGINS=/path/to/my_ops.py,other    # a file, and a module
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from s4dc.errors import S4dcError

ENV_VAR = "S4DC_PLUGINS"
_loaded: set[str] = set()


class PluginError(S4dcError):
    """A module named in $S4DC_PLUGINS cannot be imported."""


def load() -> list[str]:
    """Import every plugin not imported yet; returns the names imported now."""
    new = []
    for item in (s.strip() for s in os.environ.get(ENV_VAR, "").split(",")):
        if not item or item in _loaded:
            continue
        _loaded.add(item)  # once, even if it fails: the error is raised here
        try:
            if item.endswith(".py"):
                path = Path(item).resolve()
                spec = importlib.util.spec_from_file_location(f"s4dc_plugin_{path.stem}", path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"no module at {path}")
                mod = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = mod  # as an import would (dataclasses, pickling look it up)
                spec.loader.exec_module(mod)
            else:
                importlib.import_module(item)
        except S4dcError:
            raise
        except Exception as e:
            raise PluginError(f"{ENV_VAR}: cannot import '{item}' ({type(e).__name__}: {e})") from None
        new.append(item)
    return new
