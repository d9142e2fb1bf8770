"""Save and load the IR: `graph.json` (structure) plus `params.npz` (arrays).

The round trip is exact (arrays are stored in numpy's own format, complex
included) and the bytes are deterministic: the zip entries carry a fixed
timestamp and a fixed order, so the same graph always writes the same files.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from s4dc.errors import NetworkFormatError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.tensor import Tensor

IR_VERSION = 1
_EPOCH = (1980, 1, 1, 0, 0, 0)


def dump_json(obj: Any) -> str:
    """The one JSON style of every file s4dc writes: sorted keys, stable."""
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez, but byte-for-byte deterministic (fixed timestamps, order)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def graph_to_json(graph: Graph) -> dict[str, Any]:
    return {
        "ir_version": IR_VERSION,
        "name": graph.name,
        "meta": graph.meta,
        "tensors": [graph.tensors[k].to_json() for k in sorted(graph.tensors)],
        "layers": [
            {"name": l.name, "op": l.op, "inputs": l.inputs, "output": l.output,
             "attrs": l.attrs, "params": sorted(l.params), "source": l.source}
            for l in graph.layers
        ],
    }


def save_graph(graph: Graph, folder: Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "graph.json").write_text(dump_json(graph_to_json(graph)))
    write_npz(folder / "params.npz",
              {f"{l.name}/{k}": v for l in graph.layers for k, v in l.params.items()})


def load_graph(folder: Path) -> Graph:
    folder = Path(folder)
    try:
        doc = json.loads((folder / "graph.json").read_text())
        arrays = np.load(folder / "params.npz", allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise NetworkFormatError(f"{folder}: cannot read the saved IR ({e})") from None
    if doc.get("ir_version") != IR_VERSION:
        raise NetworkFormatError(f"{folder}/graph.json: IR version {doc.get('ir_version')!r}, "
                                 f"this s4dc reads version {IR_VERSION}")
    with arrays:
        layers = [Layer(d["name"], d["op"], list(d["inputs"]), d["output"], d["attrs"],
                        {k: arrays[f"{d['name']}/{k}"] for k in d["params"]}, d.get("source", ""))
                  for d in doc["layers"]]
    tensors = {t["name"]: Tensor.from_json(t) for t in doc["tensors"]}
    return Graph(doc["name"], layers, tensors, doc.get("meta", {}))
