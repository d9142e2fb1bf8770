"""The library entry point: `s4dc.compile(model, **options) -> Network`."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from s4dc import __version__, plugins
from s4dc.frontend import Frontend
from s4dc.ir.graph import Graph
from s4dc.ir.ops import READOUT
from s4dc.network import NET_FORMAT, NET_FORMAT_VERSION, Network, check_accuracy, check_time_length
from s4dc.frontend.onnx_prep import opset_of, prepare, read_model
from s4dc.errors import CalibrationError
from s4dc.options import CompileOptions
from s4dc.precision import read_config
from s4dc.passes import FLOWS, PassLog, run_flow
from s4dc.passes.base import PassContext, PassRecord
from s4dc.passes.place import strip_timing
from s4dc.targets.float_exec import FloatExecutor

Progress = Callable[[str], None]


def compile(model: "str | os.PathLike | bytes | onnx.ModelProto", *, progress: Progress | None = None,
            base_dir: "str | os.PathLike | None" = None, **options: Any) -> Network:  # noqa: A001 - the public name
    """Compile an ONNX S4D model. Options: see `CompileOptions`. Quiet unless
    a `progress` callback is given (the CLI passes one).

    Tensors stored outside the model (FILE.onnx.data, as torch's dynamo
    exporter writes them) are read from `base_dir`: by default the model
    file's folder; for `bytes` or an `onnx.ModelProto`, which have no folder,
    it must be given (the folder that holds the data file), else such a model
    is refused. A data file outside that folder is refused."""
    say = progress or (lambda msg: None)
    plugins.load()  # out-of-tree ops register before anything is looked up
    calib_src = options.get("calibration")
    if isinstance(calib_src, np.ndarray):  # library calls may pass the array itself
        options = {**options, "calibration": _array_label(calib_src)}
    opts = CompileOptions.make(**options)
    proto, sha, name = read_model(model if not isinstance(model, os.PathLike) else str(model),
                                  None if base_dir is None else Path(base_dir))
    t0 = time.perf_counter()
    say(f"reading {name}")
    prepared, hints = prepare(proto, opts.seq_len, name)
    graph = Frontend(prepared, name, hints).lower()
    check_time_length(graph.meta.get("kernel_lengths", {}), int(graph.meta.get("time_steps") or 0), opts.strict,
                      Path(name).name)  # conv kernels shorter than the time length: warn, or refuse (strict)
    log = PassLog([PassRecord("frontend", {"onnx_nodes": len(prepared.graph.node),
                                           "layers": len(graph.layers)}, time.perf_counter() - t0)])
    check = _NumericCheck(graph) if opts.verify_numerics else None

    float_graph: list[Graph] = [graph]  # the graph the quantizer started from (for QAT)

    last: list[Graph] = [graph]

    def after(pass_name: str, g: Graph) -> dict[str, Any] | None:
        say(f"  {pass_name}: done")
        if not any(l.opdef.quantized for l in g.layers):
            float_graph[0] = g  # passes copy: a later pass does not change it
        changed, last[0] = g is not last[0], g  # mapping steps leave the graph as it is
        return check(g) if check and changed else None

    flow = FLOWS["float" if opts.float_only else "loihi2" if opts.place else "loihi2_unplaced"]
    config = read_config(opts.config)  # unreadable config: fail before any work
    calib_x, calib_note = None, None
    if not opts.float_only:
        calib_x, calib_note = _calibration(calib_src, graph)
    say(f"running passes: {', '.join(flow)}")
    ctx = PassContext(options=opts, calibration_x=calib_x, calibration_note=calib_note or "", config=config,
                      progress=say)
    graph, log = run_flow(graph, flow, ctx, log, after_each=after)
    for rec in log.records:  # far from float: warn, or refuse (strict)
        if rec.name == "quantize":
            check_accuracy(rec.changes, opts.strict, Path(name).name)
    placement = ctx.results.get("placement")
    manifest: dict[str, Any] = {
        "format": NET_FORMAT,
        "format_version": NET_FORMAT_VERSION,
        "s4dc_version": __version__,
        "source": {"file": Path(name).name, "sha256": sha, "opset": opset_of(proto),
                   "producer": f"{proto.producer_name} {proto.producer_version}".strip()},
        "options": opts.to_json(),
        "calibration": calib_note,
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
        "kernel_lengths": dict(graph.meta.get("kernel_lengths", {})),  # taps per conv-form layer
    }
    if placement is not None:
        manifest["files"]["placement"] = "placement.json"
    timings = log.timings()
    if placement is not None:
        timings.update({f"placement_{k}": v for k, v in placement.get("timing", {}).items()})
    net = Network(graph, manifest, timings, placement=strip_timing(placement) if placement else None)
    if not opts.float_only:
        net.float_graph = float_graph[0]
    return net


SYNTHETIC_CALIBRATION = 64


def _array_label(x: np.ndarray) -> str:
    sha = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]
    return f"array {x.shape} {x.dtype} (sha256 {sha})"


def _calibration(source: "str | np.ndarray | None", graph: Graph) -> tuple[np.ndarray, str]:
    """Calibration inputs shaped like the model input: from a file (.npz with
    key 'x', or a .npy array), an array, or standard normal samples when none
    is given."""
    T, F = int(graph.meta.get("time_steps") or 0), graph.input_layer.attrs["features"]
    if source is None:
        x = np.random.default_rng(0).standard_normal((SYNTHETIC_CALIBRATION, T, F))
        return x, f"{SYNTHETIC_CALIBRATION} synthetic standard-normal sequences (no --calibration given)"
    path = "calibration array" if isinstance(source, np.ndarray) else source
    if isinstance(source, np.ndarray):
        x = source
    else:
        try:
            data = np.load(source, allow_pickle=False)
            x = data if isinstance(data, np.ndarray) else data["x"]   # .npy: the array itself
        except (OSError, ValueError, KeyError) as e:
            raise CalibrationError(f"{source}: cannot read calibration array 'x' ({e})") from None
    if graph.meta.get("input_rank") == 2 and x.ndim == 2:
        x = x[..., None]
    if not np.issubdtype(x.dtype, np.floating):
        raise CalibrationError(f"{path}: 'x' must be float32, got {x.dtype}")
    fixed = _time_fixed_by(graph)
    if x.ndim != 3 or x.shape[2] != F or x.shape[0] < 1 or x.shape[1] < 1 or (fixed and x.shape[1] != T):
        why = f" ({fixed} fixes the time length)" if fixed and x.ndim == 3 and x.shape[2] == F else ""
        want = f"(n, {T}, {F})" if fixed else f"(n, time, {F})"
        raise CalibrationError(f"{path}: 'x' has shape {x.shape}, the model takes {want}{why}")
    if not np.all(np.isfinite(x)):
        raise CalibrationError(f"{path}: 'x' holds NaN or Inf")
    sha = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]
    where = "the given array" if isinstance(source, np.ndarray) else Path(source).name
    return x.astype(np.float64), f"{x.shape[0]} sequences from {where} (sha256 {sha})"


def _time_fixed_by(graph: Graph) -> str:
    """What ties the network to its model's time length, or "" when every
    layer is recurrent or pointwise in time: then it calibrates and runs at
    any length (a stream calibrated as long as it will run sees its peaks)."""
    kernels = graph.meta.get("kernel_lengths") or {}
    if kernels:
        return f"the convolution kernel of {sorted(kernels)[0]}"
    readout = next((l for l in graph.layers if l.is_(READOUT)), None)
    return f"the time readout {readout.name}" if readout is not None else ""


def _flat(out: "np.ndarray | list[np.ndarray]") -> np.ndarray:
    return np.concatenate([o.astype(np.float64).ravel() for o in (out if isinstance(out, list) else [out])])


class _NumericCheck:
    """FINN-style step verification: after every pass, run the float executor
    on a fixed random input and compare with the frontend's graph."""

    def __init__(self, graph: Graph):
        rng = np.random.default_rng(0)
        t = min(int(graph.meta.get("time_steps") or 16), 256)
        self.x = rng.standard_normal((2, t, graph.input_layer.attrs["features"]))
        self.ref = self._outputs(graph)
        self.ref_model = _flat(FloatExecutor(graph).run(self.x))

    def _outputs(self, graph: Graph) -> np.ndarray:
        if any(l.opdef.quantized for l in graph.layers):  # the integers, decoded, as the model returns them
            from s4dc.targets.fixed_sim import FixedSimulator

            return _flat(FixedSimulator(graph).run(self.x))
        tr = FloatExecutor(graph).trace(self.x)  # float64, before any cast
        return np.concatenate([tr[l.name].ravel() for l in graph.output_layers])

    def __call__(self, graph: Graph) -> dict[str, Any]:
        got = self._outputs(graph)
        ref = self.ref
        if any(l.opdef.quantized for l in graph.layers):  # compared as the model returns its outputs
            ref = self.ref_model
        err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
        return {"rel_deviation_from_frontend": float(f"{err:.3e}")}
