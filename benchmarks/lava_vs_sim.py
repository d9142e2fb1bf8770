"""Lava's bit-accurate CPU simulation against s4dc's numpy simulator, on the
same compiled network, in one run (`make bench-lava`).

Both compute the same integers (tests/test_lava.py). Lava runs one sample at
a time (one Lava step per time step, one OS process per Lava process); the
simulator runs a whole batch. Reported per sample and time step:

- Lava: steady state (start-up excluded) and all-in (compile, spawn, stop);
- simulator at batch 1 (goal: >= 50x faster than Lava) and at its best batch
  size (goal: >= 1000x faster).

    .venv/bin/python benchmarks/lava_vs_sim.py [--net OUT/] [--time 256] [--json out.json]

Default network: examples/digits compiled for Loihi 2 (3 S4D layers, H=64,
33 complex states per channel); its inputs are test images back to back.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import s4dc
from s4dc.targets.fixed_sim import FixedSimulator
from s4dc.targets.lava.runner import lava_python, run_lava

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"


def digits_net(tmp: Path) -> Path:
    out = tmp / "digits"
    s4dc.compile(str(DIGITS / "model.onnx"), calibration=str(DIGITS / "calibration.npz")).save(out)
    return out


def inputs(graph, T: int, n: int) -> np.ndarray:
    """n streams of T steps: digits test images back to back (for the digits
    network), else standard normal."""
    f = graph.input_layer.attrs["features"]
    if f == 1 and (DIGITS / "test.npz").exists():
        img = np.load(DIGITS / "test.npz")["x"][:, :, 0]           # (450, 64)
        flat = np.tile(img.reshape(-1), -(-n * T // img.size))
        return flat[:n * T].reshape(n, T, 1).astype(np.float32)
    return np.random.default_rng(0).standard_normal((n, T, f)).astype(np.float32)


def time_sim(graph, x: np.ndarray, min_s: float = 1.0, reps: int = 5) -> float:
    """Best seconds per run of FixedSimulator.run(x) (one process)."""
    sim = FixedSimulator(graph)
    sim.run(x[:, :8])  # warm caches (and a JIT, where installed)
    best, spent, k = np.inf, 0.0, 0
    while k < reps and (k < 2 or spent < min_s):
        t0 = time.perf_counter()
        sim.run(x)
        dt = time.perf_counter() - t0
        best, spent, k = min(best, dt), spent + dt, k + 1
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", help="compiled network folder (default: the digits example, compiled here)")
    ap.add_argument("--time", type=int, default=256, help="time steps per sample (default 256)")
    ap.add_argument("--batches", default="1,8,32,64,128,256,512", help="simulator batch sizes")
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args()
    lava_python()  # fail early, with the setup hint, when .venv-lava is missing
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.net) if a.net else digits_net(Path(tmp))
        g = s4dc.load(out).graph
        T = a.time
        batches = [int(b) for b in a.batches.split(",")]
        x = inputs(g, T, max(batches))

        t0 = time.perf_counter()
        y_lava, info = run_lava(out, x[:1])
        lava_all = (time.perf_counter() - t0) / T
        lava_step = info["s_per_step"]
        exact = bool(np.array_equal(y_lava, FixedSimulator(g).run(x[:1])))

        sim = {}
        for b in batches:
            sim[b] = time_sim(g, x[:b]) / (b * T)
    best_b = min(sim, key=sim.get)
    res = {
        "network": str(a.net or "examples/digits (compiled)"), "time_steps": T,
        "lava": {"s_per_step": lava_step, "s_per_step_all_in": lava_all, "startup_s": info["startup_s"],
                 "processes": info["processes"], "latency_steps": info["latency_steps"], "steps": info["steps"]},
        "sim_s_per_sample_step": {str(b): v for b, v in sim.items()},
        "speedup_batch1": lava_step / sim[1], "speedup_best": lava_step / sim[best_b], "best_batch": best_b,
        "speedup_batch1_all_in": lava_all / sim[1], "bit_exact_batch1": exact,
        "goals": {"batch1_50x": lava_step / sim[1] >= 50, "best_1000x": lava_step / sim[best_b] >= 1000},
    }
    print(f"network: {res['network']}, {T} steps per sample, Lava {info['processes']} processes, "
          f"latency {info['latency_steps']} steps")
    print(f"Lava (1 sample):       {lava_step * 1e3:9.3f} ms/step steady, {lava_all * 1e3:.3f} ms/step all-in "
          f"(start-up {info['startup_s']:.2f} s)")
    for b, v in sim.items():
        print(f"simulator, batch {b:4d}: {v * 1e6:9.2f} us/sample-step   Lava / simulator = {lava_step / v:8.0f}x")
    print(f"speed-up at batch 1: {res['speedup_batch1']:.0f}x (goal 50x); at batch {best_b}: "
          f"{res['speedup_best']:.0f}x (goal 1000x); bit-exact: {exact}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
