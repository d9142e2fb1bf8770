"""Run a compiled network in Lava's bit-accurate CPU simulation (.venv-lava).

    python -m s4dc.targets.lava.run OUT/ X.npy -o Y.npy [--int-trace DIR]
           [--messages M.npz] [--info INFO.json] [--placement placement.json]

X: float32 (batch, time, features) as for `s4dc run`. Y: what the ONNX model
gives (the simulator's decoding, applied to the integers Lava computed); with
several outputs, -o must name an .npz (keys: output layer names).
--int-trace DIR: DIR/trace.npz, every on-chip layer's integer messages
(batch, time, features), aligned to the ONNX time axis, and DIR/info.json.
--messages: the integer messages feeding each output (before decoding).
--info: latency_steps, per-layer latency, steps run, seconds, saturations.
The placement defaults to OUT/placement.json when it exists.

Errors end with one line `s4dc-lava-error: CLASS: message` on stderr and
exit status 2 (the main environment's runner re-raises CLASS).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from s4dc.atomic import write_atomic
from s4dc.errors import InputDataError, S4dcError
from s4dc.ir.graph import Graph
from s4dc.targets.lava.errors import LavaRunError, LavaSetupError


def _x_for(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The input as the simulator takes it (Network._input's rules)."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputDataError(f"input must be float32, got dtype {x.dtype}")
    if graph.meta.get("input_rank") == 2 and x.ndim == 2:
        x = x[..., None]
    f = graph.input_layer.attrs["features"]
    if x.ndim != 3 or x.shape[2] != f:
        raise InputDataError(f"input must be (batch, time, {f}), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise InputDataError(f"input has an empty batch or time axis: shape {x.shape}")
    return x


def run_network(graph: Graph, x: np.ndarray, *, placement: str | Path | None = None, trace: bool = False,
                workdir: str | Path | None = None) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Run `graph` on float input `x` in Lava. Returns (outputs, info):
    outputs as FixedSimulator.run gives them (a list, one per output);
    info: latency_steps, layer_latency, steps, processes, seconds,
    saturations, warnings, messages (integer streams feeding each output),
    trace (every on-chip layer's integers, with trace=True)."""
    try:
        from s4dc.targets.lava.build import LavaNetwork
    except ImportError as e:
        raise LavaSetupError(f"lava-nc is not importable in {sys.executable} ({e}); "
                             "make the Lava environment with `make .venv-lava`") from None
    from s4dc.targets.fixed_sim import FixedSimulator
    from s4dc.targets.lava.plan import plan as make_plan

    p = make_plan(graph, placement)
    sim = FixedSimulator(graph)
    x = _x_for(graph, x)
    m = sim.encode(x)  # the host encodes exactly as the simulator (counts input saturations)
    net = LavaNetwork(p, m, trace=trace, workdir=workdir)
    try:
        res = net.run()
    finally:
        net.close()
    # Host side: the simulator's own readout / decoding code on Lava's integers.
    outs = sim.decode(res["tensors"])
    sats = {l.name: 0 for l in graph.layers}
    sats[graph.input_layer.name] = sim.saturations[graph.input_layer.name]
    for k, v in res["saturations"].items():
        sats[k] += v
    B, T = m.shape[:2]
    info = p.summary()
    info.update({"batch": int(B), "time": int(T), "steps": res["steps"],
                 "startup_s": round(res["startup_s"], 4), "run_s": round(res["run_s"], 4),
                 "wall_s": round(res["wall_s"], 4), "s_per_step": round(res["s_per_step"], 6),
                 "processes": net.processes, "saturations": sats})
    msgs = {}
    for l in graph.output_layers:
        src = l.output
        while not graph.tensors[src].sequence:  # back through the host layers to the chip's stream
            src = graph.producer(src).inputs[0]
        msgs[l.name] = res["tensors"][src]
    info["messages"] = msgs
    if trace:
        info["trace"] = res["trace"]
    return outs, info


def _save_npy(path: Path, arr: np.ndarray) -> None:
    write_atomic(path, lambda f: np.save(f, arr))


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    write_atomic(path, lambda f: np.savez(f, **arrays))


def _json_info(info: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in info.items() if k not in ("messages", "trace")}, indent=1, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m s4dc.targets.lava.run",
                                 description="Run a compiled s4dc network in Lava's bit-accurate simulation.")
    ap.add_argument("net", help="compiled network folder (OUT/)")
    ap.add_argument("input", help=".npy, float32 (batch, time, features)")
    ap.add_argument("-o", "--out", required=True, help=".npy (one output) or .npz (all outputs)")
    ap.add_argument("--int-trace", metavar="DIR", help="write every on-chip layer's integers to DIR/trace.npz")
    ap.add_argument("--messages", metavar="NPZ", help="write the integer messages feeding each output")
    ap.add_argument("--info", metavar="JSON", help="write latency, steps, timings, saturations")
    ap.add_argument("--placement", metavar="JSON", help="placement.json (default: OUT/placement.json if present)")
    a = ap.parse_args(argv)

    def _terminate(signum, frame):  # the runner's timeout: unwind, so Lava stops and frees its memory
        raise LavaRunError("stopped by SIGTERM")

    signal.signal(signal.SIGTERM, _terminate)
    try:
        import s4dc

        net = s4dc.load(a.net)
        try:
            x = np.load(a.input, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputDataError(f"{a.input}: cannot read a .npy array ({e})") from None
        placement = a.placement or (Path(a.net) / "placement.json" if (Path(a.net) / "placement.json").exists()
                                    else None)
        outs, info = run_network(net.graph, x, placement=placement, trace=bool(a.int_trace))
        out = Path(a.out)
        if out.suffix == ".npz":
            _save_npz(out, {l.name: o for l, o in zip(net.graph.output_layers, outs)})
        elif len(outs) == 1:
            _save_npy(out, outs[0])
        else:
            raise InputDataError(f"the network has {len(outs)} outputs: give -o an .npz file")
        if a.messages:
            _save_npz(Path(a.messages), info["messages"])
        if a.int_trace:
            d = Path(a.int_trace)
            _save_npz(d / "trace.npz", info["trace"])
            (d / "info.json").write_text(_json_info(info))
        if a.info:
            Path(a.info).write_text(_json_info(info))
    except S4dcError as e:
        print(f"s4dc-lava-error: {type(e).__name__}: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
