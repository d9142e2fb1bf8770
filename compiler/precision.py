"""Precision config, hls4ml style: a model default and per-layer overrides.

    {"Model": {"weight": 6, "a": 14},
     "LayerName": {"s4d.0_Conv": {"weight": 8}}}

Keys per entry: weight, a, b, c, state, message (bits). JSON or YAML.
"""
from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from s4dc.errors import ConfigError
from s4dc.ir.graph import Graph
from s4dc.targets.loihi2.numerics import BitWidths

_KEYS = {f.name for f in fields(BitWidths)}


def read_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as e:
        raise ConfigError(f"{path}: not valid {'YAML' if p.suffix in ('.yaml', '.yml') else 'JSON'} "
                          f"({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or set(doc) - {"Model", "LayerName"}:
        raise ConfigError(f"{path}: top-level keys must be 'Model' and/or 'LayerName'")
    return doc


def widths_for(graph: Graph, doc: dict[str, Any], where: str = "precision config") -> dict[str, BitWidths]:
    """BitWidths per layer name ('__default__' for the rest)."""
    def entry(d: Any, at: str, base: BitWidths) -> BitWidths:
        if not isinstance(d, dict) or set(d) - _KEYS:
            bad = sorted(set(d) - _KEYS) if isinstance(d, dict) else d
            raise ConfigError(f"{where}: {at}: unknown keys {bad}; known: {', '.join(sorted(_KEYS))}")
        bw = replace(base, **d)
        bw.check(f"{where}: {at}")
        return bw

    default = entry(doc.get("Model", {}), "Model", BitWidths())
    out = {"__default__": default}
    names = {l.name for l in graph.layers}
    for name, d in (doc.get("LayerName") or {}).items():
        if name not in names:
            raise ConfigError(f"{where}: LayerName '{name}' is not a layer of this network; layers: "
                              f"{', '.join(l.name for l in graph.layers if l.opdef.quantizable)}")
        out[name] = entry(d, f"LayerName '{name}'", default)
    return out
