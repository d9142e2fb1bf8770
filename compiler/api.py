"""The library entry point: `s4dc.compile(model, **options) -> Network`."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from s4dc import __version__
from s4dc.frontend import Frontend
from s4dc.ir.graph import Graph
from s4dc.network import NET_FORMAT, NET_FORMAT_VERSION, Network
from s4dc.onnx_prep import opset_of, prepare, read_model
from s4dc.options import CompileOptions
from s4dc.passes import FLOWS, PassLog, run_flow
from s4dc.passes.base import PassRecord
from s4dc.targets.float_exec import FloatExecutor

Progress = Callable[[str], None]


def compile(model: "str | os.PathLike | bytes | onnx.ModelProto", *, progress: Progress | None = None,
            **options: Any) -> Network:  # noqa: A001 - the public name users expect
    """Compile an ONNX S4D model. Options: see `CompileOptions`. Quiet unless
    a `progress` callback is given (the CLI passes one)."""
    say = progress or (lambda msg: None)
    opts = CompileOptions.make(**options)
    proto, sha, name = read_model(model if not isinstance(model, os.PathLike) else str(model))
    t0 = time.perf_counter()
    say(f"reading {name}")
    prepared = prepare(proto, opts.seq_len, name)
    graph = Frontend(prepared, name).lower()
    log = PassLog([PassRecord("frontend", {"onnx_nodes": len(prepared.graph.node),
                                           "layers": len(graph.layers)}, time.perf_counter() - t0)])
    check = _NumericCheck(graph) if opts.verify_numerics else None

    def after(pass_name: str, g: Graph) -> dict[str, Any] | None:
        say(f"  {pass_name}: done")
        return check(g) if check else None

    flow = FLOWS["float"]
    say(f"running passes: {', '.join(flow)}")
    graph, log = run_flow(graph, flow, opts, log, after_each=after)
    manifest = {
        "format": NET_FORMAT,
        "format_version": NET_FORMAT_VERSION,
        "s4dc_version": __version__,
        "source": {"file": Path(name).name, "sha256": sha, "opset": opset_of(proto),
                   "producer": f"{proto.producer_name} {proto.producer_version}".strip()},
        "options": opts.to_json(),
        "flow": ["frontend"] + flow,
        "passes": log.to_json(),
        "io": {
            "input": {"name": graph.meta.get("input_name"), "features": graph.input_layer.attrs["features"],
                      "time_steps": graph.meta.get("time_steps"), "rank": graph.meta.get("input_rank")},
            "outputs": [{"name": l.attrs.get("onnx_name"), "features": graph.tensors[l.output].features,
                         "sequence": graph.tensors[l.output].sequence, "layout": l.attrs["layout"]}
                        for l in graph.output_layers],
        },
        "files": {"graph": "graph.json", "params": "params.npz", "timings": "timings.json"},
    }
    return Network(graph, manifest, log.timings())


class _NumericCheck:
    """FINN-style step verification: after every pass, run the float executor
    on a fixed random input and compare with the frontend's graph."""

    def __init__(self, graph: Graph):
        rng = np.random.default_rng(0)
        t = min(int(graph.meta.get("time_steps") or 16), 256)
        self.x = rng.standard_normal((2, t, graph.input_layer.attrs["features"]))
        self.ref = self._outputs(graph)

    def _outputs(self, graph: Graph) -> np.ndarray:
        tr = FloatExecutor(graph).trace(self.x)  # float64, before any cast
        return np.concatenate([tr[l.name].ravel() for l in graph.output_layers])

    def __call__(self, graph: Graph) -> dict[str, Any]:
        got = self._outputs(graph)
        err = float(np.abs(got - self.ref).max() / max(np.abs(self.ref).max(), 1e-30))
        return {"rel_deviation_from_frontend": float(f"{err:.3e}")}
