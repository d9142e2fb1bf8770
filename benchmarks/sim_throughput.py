"""Simulator throughput (`make bench-sim`): the bit-exact integer simulator
against a float32 numpy reference of the same network, in one run.

Goals (numerics issue), on the Fashion-MNIST model (784 steps): the integer
simulator within 2x the float32 reference's time per sample-step at batch
256, and the full 10k test set through all 784 steps in under 5 minutes on
2 cores (projected from the measured batch rate, or measured with --full).

    .venv/bin/python benchmarks/sim_throughput.py [--model examples/fashion/model.onnx] [--full] [--no-mimo]
        [--batch 256] [--repeats 1]

MIMO (issue 13): an S5-shaped network (4 MIMO layers, H=64, P=256 shared
complex modes each, dense B and C, written with CanonicalModel.mimo) runs
through the same simulator; goal: within 2x the S4D model's time per
complex state-step at batch 256.

How "per complex state-step" is counted, the same way for both: the whole
network's wall time per sample-step (every layer: the encoder and decoder
affines, the readout, all of it) divided by the network's complex states,
sum H N over the S4D (`qssm`) layers and sum P over the MIMO (`qmimo`)
layers. So each figure carries that state's own synapse work. An S4D
state-step is a x (4 real MACs), b u (2) and Re(c x) (2); a MIMO mode-step
is a x (4) and its share of the dense synapses, 2 H_in (its B rows, re and
im) + 2 H_out (its C columns) + H_in H_out / P (D): 272 real MACs at H=64,
P=256, against the S4D state's 4. Both are measured in the same run, on the
same batch, after a warm-up call (numba kernels loaded, threads started);
with --repeats N the two are measured alternately N times (a shared machine
drifts) and the best of each, and the spread, are printed.

The MIMO line also prints the floor the goal meets: the float64 GEMMs of
the dense B, C and D synapses alone (the simulator's own calls: its block
shape, one BLAS thread per core), and the same MACs at this machine's
large-matrix dgemm rate. Those integer sums need float64 (a 24-bit message
times an 8-bit weight is a 32-bit product; float32 holds 24 bits), so on
a machine where the floor is already past 2x the S4D figure, 2x is out of
reach for an exact simulator that does the synapse sums in float64.

The cheaper arithmetics do not rescue it. float32 holds an exact sum only
while |u| sum|w| <= 2^24; splitting each message into two 12-bit halves
makes that hold for moderate weights, but two sgemms cost what one dgemm
does (sgemm runs at about 2.1x the dgemm rate here). numpy has no integer
BLAS. A native int8 dot-product kernel (AVX-512 VNNI: 64 int8 MACs a cycle
at best, against about 8 float64 ones) needs three byte passes per 24-bit
message, so at best 2.7x the dgemm rate: the GEMMs alone would still be
about 1.9x the S4D state-step, and the recurrence and output pass alone
already cost about 1.4x it (both measured below), about 3x in all. Meeting
2x would take some 55 exact MACs a cycle per core. So the simulator is held
to the product floor instead: its MIMO figure is printed next to the GEMMs'.
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import s4dc
from s4dc.ir.graph import Graph
from s4dc.targets.fixed_sim import CHUNK
from s4dc.targets.loihi2 import qmimo, qssm

ROOT = Path(__file__).resolve().parents[1]


class Float32Reference:
    """The float network in float32/complex64, chunked like the simulator."""

    def __init__(self, g: Graph):
        self.g = g
        self.c = {}
        for l in g.layers:
            p = l.params
            if l.op == "affine":
                self.c[l.name] = (p["weight"].T.astype(np.float32).copy(), p["bias"].astype(np.float32))
            elif l.op == "ssm":
                gain = 2.0 if l.attrs.get("folded") else 1.0
                self.c[l.name] = (p["A"].astype(np.complex64), p["B"].astype(np.complex64),
                                  (gain * p["C"]).astype(np.complex64), p["D"].astype(np.float32),
                                  p["bias"].astype(np.float32))

    def run(self, x: np.ndarray) -> np.ndarray:
        g = self.g
        seq = [l for l in g.layers if g.tensors[l.output].sequence]
        outs = []
        for b0 in range(0, len(x), CHUNK):
            m = np.ascontiguousarray(x[b0:b0 + CHUNK].transpose(1, 0, 2).astype(np.float32))
            state, acc = {}, {}
            for t in range(m.shape[0]):
                cur = {}
                for l in seq:
                    ins = [cur[i] for i in l.inputs]
                    if l.op == "input":
                        v = m[t]
                    elif l.op == "affine":
                        w, b = self.c[l.name]
                        v = ins[0] @ w
                        v += b
                    elif l.op == "ssm":
                        A, B, C, D, bias = self.c[l.name]
                        s = state.get(l.name)
                        s = B * ins[0][:, :, None] if s is None else A * s + B * ins[0][:, :, None]
                        state[l.name] = s
                        v = (C * s).real.sum(-1) + D * ins[0] + bias
                    elif l.op == "relu":
                        v = np.maximum(ins[0], 0)
                    elif l.op == "add":
                        v = ins[0] + ins[1]
                    else:
                        v = ins[0]
                    cur[l.output] = v
                for l in g.layers:
                    if l.op == "readout":
                        src = cur[l.inputs[0]]
                        acc[l.name] = src if l.attrs["mode"] == "last" else acc.get(l.name, 0) + src
            outs.append(np.concatenate([acc[k] for k in acc], axis=-1))
        return np.concatenate(outs)


def rate(fn, x, repeats: int = 1) -> float:
    """Seconds per sample-step (best of `repeats`)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return best / (x.shape[0] * x.shape[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "examples" / "fashion" / "model.onnx"))
    ap.add_argument("--calibration", default=None)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--full", action="store_true", help="also run the full Fashion-MNIST test set")
    ap.add_argument("--no-mimo", action="store_true", help="skip the MIMO (S5-shaped) model")
    ap.add_argument("--repeats", type=int, default=1,
                    help="measure the S4D and MIMO integer simulators this many times, alternately (best and spread)")
    a = ap.parse_args()
    model = Path(a.model)
    calib = a.calibration or str(model.parent / "calibration.npz")
    net = s4dc.compile(model, calibration=calib)
    fnet = s4dc.compile(model, float_only=True)
    ref = Float32Reference(_sunk(fnet.graph))
    T, F = net.manifest["io"]["input"]["time_steps"], net.manifest["io"]["input"]["features"]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (a.batch, T, F)).astype(np.float32)
    ssm = [l for l in net.graph.layers if l.op == "qssm"]
    print(f"model {model.name}: {len(ssm)} S4D layers, {sum(l.params['a_re'].size for l in ssm)} complex states, "
          f"T={T}; S4D recurrence: {'numba kernel' if qssm.AVAILABLE else 'numpy driver (no numba or S4DC_NO_JIT=1)'}")
    r_float = rate(ref.run, x)
    net.run(x[:CHUNK, :8])  # warm-up: the numba kernels loaded and their threads started outside the timing
    r_int = rate(net.run, x)
    net.run(x[:1, :8])  # compile the single-sample kernel outside the timing
    r_int1 = rate(net.run, x[:1, :min(T, 200)])
    r_float1 = rate(ref.run, x[:1, :min(T, 200)])
    print(f"batch {a.batch}: float32 reference {r_float * 1e6:7.1f} us/sample-step, "
          f"integer simulator {r_int * 1e6:7.1f} us/sample-step, ratio {r_int / r_float:.2f} (goal <= 2)")
    print(f"batch 1:   float32 reference {r_float1 * 1e6:7.1f} us/step, integer simulator {r_int1 * 1e6:7.1f} us/step")
    proj = r_int * 10000 * 784
    print(f"10k x 784 projected from the batch-{a.batch} rate: {proj:.0f} s (goal < 300 s; "
          "the numba kernel spreads samples over both cores)")
    if not a.no_mimo:
        mimo_bench(a.batch, T, lambda: rate(net.run, x), r_int, sum(l.params["a_re"].size for l in ssm), a.repeats)
    if a.full:
        import importlib.util
        spec = importlib.util.spec_from_file_location("fdata", model.parent / "data.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        xt, yt = mod.load_fashion("test")
        t0 = time.perf_counter()
        out = net.run(xt)
        print(f"full test set {xt.shape}: {time.perf_counter() - t0:.0f} s, accuracy {np.mean(out.argmax(1) == yt):.4f}")


def s5_model(T: int, H: int = 64, P: int = 256, layers: int = 4, seed: int = 0):
    """An S5-shaped model in the canonical MIMO form (S5's init: Lambda with
    real part -1/2 and growing imaginary parts, log-uniform dt)."""
    from s4dc.frontend.canonical import CanonicalModel

    rng = np.random.default_rng(seed)
    m = CanonicalModel(features=1, time=T)
    m.linear(rng.standard_normal((H, 1)), np.zeros(H))
    for _ in range(layers):
        lam = -0.5 + 1j * np.pi * np.arange(P) / 4
        dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), P))
        B = (rng.standard_normal((P, H)) + 1j * rng.standard_normal((P, H))) / np.sqrt(2 * H)
        C = (rng.standard_normal((H, P)) + 1j * rng.standard_normal((H, P))) / np.sqrt(2 * P)
        m.mimo(lam, B, C, rng.standard_normal((H, H)) / np.sqrt(H), dt=dt).relu()
    m.readout("mean").linear(rng.standard_normal((10, H)) / np.sqrt(H), np.zeros(10))
    return m.to_onnx()


def mimo_bench(batch: int, T: int, siso_rate, siso_first: float, siso_states: int, repeats: int = 1) -> None:
    """The S5-shaped model's rate per complex state-step against the S4D
    model's (`siso_rate()` measures it again; `siso_first` is the
    measurement already made), and the float64 GEMM floor."""
    rng = np.random.default_rng(1)
    cal = rng.uniform(0, 1, (16, T, 1)).astype(np.float32)
    net = s4dc.compile(s5_model(T), calibration=cal, place=False)
    q = [l for l in net.graph.layers if l.op == "qmimo"]
    P = sum(l.params["a_re"].size for l in q)
    x = rng.uniform(0, 1, (batch, T, 1)).astype(np.float32)
    net.run(x[:CHUNK, :8])  # warm-up, as for the S4D model
    r_mimo, r_siso = [], [siso_first]
    for i in range(repeats):
        if i:
            r_siso.append(siso_rate())
        r_mimo.append(rate(net.run, x))
    siso = min(r_siso) / siso_states
    mimo = min(r_mimo) / P
    macs = sum(l.params["b_re"].size * 2 + l.params["c_re"].size * 2 + l.params["d"].size for l in q)
    spread = lambda v, n: f"{min(v) / n * 1e9:.2f}-{max(v) / n * 1e9:.2f}"  # noqa: E731
    h, p = q[0].params["d"].shape[0], q[0].params["a_re"].size
    print(f"MIMO (S5-shaped): {len(q)} layers, H={h}, P={p} each ({P} complex modes), T={T}, batch {batch}: "
          f"{min(r_mimo) * 1e6:.1f} us/sample-step")
    print(f"  per complex state-step (whole network / complex states): MIMO {mimo * 1e9:.2f} ns vs S4D "
          f"{siso * 1e9:.2f} ns in this run, ratio {mimo / siso:.2f} (goal <= 2)"
          + (f"; {repeats} runs each: MIMO {spread(r_mimo, P)} ns, S4D {spread(r_siso, siso_states)} ns"
             if repeats > 1 else ""))
    n = qmimo.threads(CHUNK) if qssm.AVAILABLE else 1
    g = gemm_floor(q, T, n) / P
    peak = dgemm_rate()
    bound = 2 * macs / (peak * n) / P
    print(f"  a mode-step carries {macs // P} synaptic MACs (S4D state-step: 4); the float64 B, C, D GEMMs alone "
          f"({n} thread{'s' if n > 1 else ''}, the simulator's block shape): {g * 1e9:.2f} ns per mode-step = "
          f"{g / siso:.2f} x S4D; at this machine's large dgemm rate ({peak / 1e9:.0f} GFLOP/s per core): "
          f"{bound * 1e9:.2f} ns = {bound / siso:.2f} x S4D")
    print(f"  the simulator runs at {mimo / g:.2f} x its own GEMM floor (the goal this machine allows: <= 2)")


def gemm_floor(q: list, T: int, threads: int, samples: int = 32) -> float:
    """Seconds per sample-step of the MIMO layers' dense synapse sums alone:
    the float64 GEMMs the simulator makes (B, C and D of every layer, a
    block of qmimo.ROWS sample-steps per call), `samples` sequences of T
    steps split over `threads` threads with one BLAS thread each."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(2)
    ks = [qmimo.fold(l.params, l.attrs) for l in q]
    rows = qmimo.ROWS
    steps = samples * T // threads

    def work(_):
        bufs = [(rng.integers(-2**20, 2**20, (rows, k.bt.shape[0])).astype(np.float64), np.empty((rows, k.bt.shape[1])),
                 np.empty((rows, k.h_out)), np.empty((rows, k.h_out))) for k in ks]
        for _ in range(0, steps, rows):
            for k, (u, d, c, e) in zip(ks, bufs):
                np.matmul(u, k.bt, out=d)
                np.matmul(d, k.ct, out=c)
                np.matmul(u, k.dt, out=e)

    with threadpool_limits(1, "blas"), ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))  # warm-up
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            list(pool.map(work, range(threads)))
            best = min(best, time.perf_counter() - t0)
    return best / (steps * threads)


def dgemm_rate(n: int = 1024) -> float:
    """FLOP/s of one core on a large float64 matrix product (best of 3)."""
    from threadpoolctl import threadpool_limits

    a, b = np.random.default_rng(3).standard_normal((2, n, n))
    with threadpool_limits(1, "blas"):
        a @ b
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _sunk(g: Graph) -> Graph:
    from s4dc.passes import PASSES
    return PASSES["sink_readout"](g, None)[0]


if __name__ == "__main__":
    main()
