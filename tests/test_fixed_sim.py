"""The bit-exact simulator against a plain integer reference written here,
independently, from docs/fixed_point.md (Python integers, no float tricks)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from s4dc.ir import Graph, Layer, Tensor, verify
from s4dc.ir.tensor import FixedPoint
from s4dc.passes import PASSES
from s4dc.registry import DuplicateRegistration
from s4dc.targets.fixed_sim import SIM_OPS, FixedSimulator, SimOp, register_sim_op
from s4dc.targets.loihi2 import qssm
from s4dc.targets.loihi2.numerics import BitWidths


def rshift_floor(v: int, s: int) -> int:
    return v >> s if s >= 0 else v << -s


def rshift_round(v: int, s: int) -> int:
    return (v + (1 << (s - 1))) >> s if s > 0 else v << -s


def clip(v: int, bits: int) -> int:
    m = (1 << (bits - 1)) - 1
    return max(-m - 1, min(m, v))


def reference(q: Graph, m_in: np.ndarray) -> dict[str, np.ndarray]:
    """Integer values of every chip layer, step by step, in Python ints."""
    B, T, _ = m_in.shape
    out = {l.output: np.zeros((B, T, q.tensors[l.output].features), dtype=object)
           for l in q.layers if q.tensors[l.output].sequence}
    states = {}
    for b in range(B):
        for l in q.layers:
            if l.op == "qssm":
                states[l.name] = np.zeros(l.params["a_re"].shape + (2,), dtype=object)
        for t in range(T):
            for l in q.layers:
                if not q.tensors[l.output].sequence:
                    continue
                p, a = l.params, l.attrs
                ins = [out[i][b, t] for i in l.inputs]
                if l.op == "input":
                    v = [int(z) for z in m_in[b, t]]
                elif l.op in ("relu", "output"):
                    v = [max(z, 0) if l.op == "relu" else z for z in ins[0]]
                elif l.op == "qaffine":
                    W = p["weight"].tolist()
                    v = []
                    for i, row in enumerate(W):
                        acc = sum(int(w) * int(z) for w, z in zip(row, ins[0]))
                        y = rshift_floor(acc, a["shift"]) + (int(p["bias_mant"][i]) << a["bias_exp"])
                        y = clip(y, a["bits"]["message"])
                        v.append(max(y, 0) if a["relu"] else y)
                elif l.op == "qadd":
                    v = [clip(rshift_floor(int(x), a["shift_a"]) + rshift_floor(int(y), a["shift_b"]),
                              a["bits"]["message"]) for x, y in zip(*ins)]
                elif l.op == "qssm":
                    H, N = p["a_re"].shape
                    fa, S, M = a["a_frac"], a["bits"]["state"], a["bits"]["message"]
                    st = states[l.name]
                    v = []
                    for h in range(H):
                        u = int(ins[0][h])
                        total = 0
                        for n in range(N):
                            xr, xi = int(st[h, n, 0]), int(st[h, n, 1])
                            ar, ai = int(p["a_re"][h, n]), int(p["a_im"][h, n])
                            br, bi = int(p["b_re"][h, n]), int(p["b_im"][h, n])
                            sb = int(p["b_shift"][h, n])
                            k = max(fa, sb)
                            nr = ((ar * xr - ai * xi) << (k - fa)) + ((br * u) << (k - sb))
                            ni = ((ar * xi + ai * xr) << (k - fa)) + ((bi * u) << (k - sb))
                            xr, xi = clip(rshift_round(nr, k), S), clip(rshift_round(ni, k), S)
                            st[h, n] = (xr, xi)
                            cr, ci = int(p["c_re"][h, n]), int(p["c_im"][h, n])
                            total += clip(rshift_round(cr * xr - ci * xi, int(p["c_shift"][h, n])), M)
                        y = total + rshift_floor(int(p["d"][h]) * u, a["d_shift"]) + \
                            (int(p["bias_mant"][h]) << a["bias_exp"])
                        y = clip(y, M)
                        v.append(max(y, 0) if a["relu"] else y)
                else:
                    raise AssertionError(l.op)
                out[l.output][b, t] = v
    return out


def random_float_graph(rng, H: int, N: int, layers: int, residual: bool) -> Graph:
    g = Graph("r")
    g.add(Layer("in", "input", [], "in", {"features": 2}), Tensor("in", 2))
    cur, width = "in", 2
    for i in range(layers):
        g.add(Layer(f"a{i}", "affine", [cur], f"a{i}", params={"weight": rng.standard_normal((H, width)),
                                                                "bias": 0.1 * rng.standard_normal(H)}), Tensor(f"a{i}", H))
        r = rng.uniform(0.3, 0.995, (H, N))
        lam = r * np.exp(1j * rng.uniform(0, np.pi, (H, N)))
        g.add(Layer(f"s{i}", "ssm", [f"a{i}"], f"s{i}", {"form": "diagonal", "time": "discrete", "folded": True},
                    {"A": lam, "B": rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N)),
                     "C": rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N)),
                     "D": rng.standard_normal(H), "bias": 0.1 * rng.standard_normal(H)}), Tensor(f"s{i}", H))
        g.add(Layer(f"r{i}", "relu", [f"s{i}"], f"r{i}"), Tensor(f"r{i}", H))
        cur, width = f"r{i}", H
        if residual and i > 0:
            g.add(Layer(f"add{i}", "add", [cur, f"r{i - 1}"], f"add{i}"), Tensor(f"add{i}", H))
            cur = f"add{i}"
    g.add(Layer("dec", "affine", [cur], "dec", params={"weight": rng.standard_normal((3, H)), "bias": np.zeros(3)}),
          Tensor("dec", 3))
    g.add(Layer("out", "output", ["dec"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", 3))
    return verify(g)


def quantize(g: Graph, x: np.ndarray, bw: BitWidths) -> Graph:
    q, _ = PASSES["quantize"](g, SimpleNamespace(calibration_x=x, precision={"__default__": bw}))
    return verify(q)


@pytest.mark.parametrize("jit", [False, pytest.param(True, marks=pytest.mark.skipif(
    not qssm.AVAILABLE, reason="numba not installed"))], ids=["numpy", "numba"])
@pytest.mark.parametrize("seed,H,N,layers,residual,bw,scale", [
    (0, 3, 4, 1, False, BitWidths(), 1.5),
    (1, 4, 3, 2, True, BitWidths(weight=4, a=12, b=10, c=10), 1.5),
    (2, 2, 5, 2, False, BitWidths(weight=6, a=8, state=16, message=16), 1.5),
    (3, 3, 4, 2, False, BitWidths(), 60.0),  # far beyond calibration: saturation
])
def test_simulator_matches_integer_reference(seed, H, N, layers, residual, bw, scale, jit):
    rng = np.random.default_rng(seed)
    g = random_float_graph(rng, H, N, layers, residual)
    q = quantize(g, rng.standard_normal((8, 40, 2)), bw)
    x = scale * rng.standard_normal((2, 40, 2))
    sim = FixedSimulator(q, jit=jit)
    tr = sim.trace(x)
    ref = reference(q, sim.encode(x).astype(np.int64))
    for l in q.layers:
        if q.tensors[l.output].sequence and l.op != "output":
            assert np.array_equal(tr[l.name], ref[l.output].astype(np.int64)), l.name
    if scale > 10:
        assert sum(sim.saturations.values()) > 0


def test_numba_and_numpy_count_the_same_saturations():
    if not qssm.AVAILABLE:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(9)
    g = random_float_graph(rng, 4, 6, 2, False)
    q = quantize(g, 0.05 * rng.standard_normal((8, 50, 2)), BitWidths())
    x = 20 * rng.standard_normal((5, 50, 2))
    a, b = FixedSimulator(q, jit=False), FixedSimulator(q, jit=True)
    assert np.array_equal(a.run(x), b.run(x))
    assert a.saturations == b.saturations and sum(a.saturations.values()) > 0


def test_step_matches_run_bit_for_bit():
    rng = np.random.default_rng(7)
    g = random_float_graph(rng, 3, 4, 2, True)
    q = quantize(g, rng.standard_normal((8, 30, 2)), BitWidths())
    sim = FixedSimulator(q)
    x = rng.standard_normal((3, 30, 2))
    whole = sim.run(x)
    sim.reset()
    steps = np.concatenate([sim.step(x[:, t]) for t in range(30)], axis=1)
    assert np.array_equal(steps, whole)


def test_saturation_is_counted_not_wrapped():
    rng = np.random.default_rng(3)
    g = random_float_graph(rng, 3, 4, 1, False)
    q = quantize(g, 0.01 * rng.standard_normal((8, 30, 2)), BitWidths())  # calibrated on tiny inputs
    sim = FixedSimulator(q)
    tr = sim.trace(100 * rng.standard_normal((2, 30, 2)))
    assert sum(sim.saturations.values()) > 0
    lim = (1 << 23) - 1
    assert all(np.abs(v).max() <= lim + 1 for k, v in tr.items() if v.dtype == np.int64)


def test_worker_processes_give_the_same_integers():
    rng = np.random.default_rng(5)
    g = random_float_graph(rng, 3, 4, 2, False)
    q = quantize(g, rng.standard_normal((8, 30, 2)), BitWidths())
    x = rng.standard_normal((40, 30, 2))
    one = FixedSimulator(q).run(x)  # threads in this process (when numba is there) ...
    two = FixedSimulator(q).run(x, workers=2)  # ... then worker processes
    assert np.array_equal(one, two)


# --- saturation, not wrapping: values driven past their rails -------------------
def wrap(v: int, bits: int) -> int:
    """What a register that wraps (two's complement) would hold."""
    return ((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1))


def railed_graph() -> Graph:
    """input -> qssm (1 channel, 2 states, lambda = 0) -> qaffine -> output, by hand:
    state 0: x = sat24(5000 u), message sat24(2 x); state 1: x = u, message u;
    channel: sat24(o_0 + o_1); then sat24(100 v). At u = 3000 every one of
    those passes its rail."""
    g = Graph("rails")
    msg = FixedPoint(24, 0)
    g.add(Layer("in", "input", [], "in", {"features": 1, "exp": 0}), Tensor("in", 1, fmt=msg))
    z = np.zeros((1, 2), np.int64)
    i64 = lambda *v: np.array(v, np.int64).reshape(1, -1)  # noqa: E731
    g.add(Layer("s", "qssm", ["in"], "s", {"bits": BitWidths().to_json(), "a_frac": 15, "d_shift": 0,
                                           "bias_exp": 0, "relu": False},
                {"a_re": z, "a_im": z, "b_re": i64(5000, 1), "b_im": z, "c_re": i64(2, 1), "c_im": z,
                 "b_shift": z, "c_shift": z, "d": np.zeros(1, np.int64), "bias_mant": np.zeros(1, np.int64)}),
          Tensor("s", 1, fmt=msg))
    g.add(Layer("w", "qaffine", ["s"], "w", {"bits": BitWidths().to_json(), "shift": 0, "bias_exp": 0,
                                             "relu": False},
                {"weight": np.array([[100]], np.int64), "bias_mant": np.zeros(1, np.int64)}), Tensor("w", 1, fmt=msg))
    g.add(Layer("out", "output", ["w"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", 1))
    return verify(g)


@pytest.mark.parametrize("jit", [False, pytest.param(True, marks=pytest.mark.skipif(
    not qssm.AVAILABLE, reason="numba not installed"))], ids=["numpy", "numba"])
@pytest.mark.parametrize("u", [3000, -3000])
def test_saturation_gives_the_rail_a_wrap_would_not(u, jit):
    hi, lo = (1 << 23) - 1, -(1 << 23)
    rail = hi if u > 0 else lo
    # the exact values, what saturation makes of them, and what wrapping would
    x0 = 5000 * u
    assert abs(x0) > hi and wrap(x0, 24) != rail
    o0 = 2 * rail
    assert wrap(o0, 24) != rail and wrap(2 * wrap(x0, 24), 24) != rail
    v = rail + u
    assert wrap(v, 24) != rail
    assert wrap(100 * rail, 24) != rail
    g = railed_graph()
    x = np.full((2, 6, 1), float(u), np.float32)
    sim = FixedSimulator(g, jit=jit)
    tr = sim.trace(x)
    assert np.array_equal(tr["s"], np.full((2, 6, 1), rail)) and np.array_equal(tr["w"], np.full((2, 6, 1), rail))
    # per sample and step: state 0, its message, the channel sum, the affine
    assert sim.saturations == {"in": 0, "s": 3 * 12, "w": 12, "out": 0}
    step = FixedSimulator(g, jit=jit)
    ys = np.concatenate([step.step(x[:, t]) for t in range(6)], axis=1)
    assert np.array_equal(ys, np.full((2, 6, 1), float(rail), np.float32))
    assert step.saturations == sim.saturations
    # and the independent integer reference agrees
    ref = reference(g, sim.encode(x).astype(np.int64))
    assert np.array_equal(ref["s"].astype(np.int64), tr["s"]) and np.array_equal(ref["w"].astype(np.int64), tr["w"])


# --- the simulator's op registry ---------------------------------------------------
def test_sim_op_registry_refuses_duplicates_and_takes_new_ops():
    with pytest.raises(DuplicateRegistration):
        register_sim_op("qssm")(SimOp)

    @register_sim_op("negate_test")
    class Negate(SimOp):  # a toy chip op: pointwise in time, so `step` serves whole sequences too
        def step(self, sim, ins, m_t, state):
            return -ins[0]

    try:
        g = railed_graph()
        g.layers[2] = Layer("w", "negate_test", ["s"], "w")
        sim = FixedSimulator(g)
        x = np.full((1, 3, 1), 5.0, np.float32)
        assert np.array_equal(sim.trace(x)["w"], -sim.trace(x)["s"])
        sim.reset()
        assert np.array_equal(sim.step(x[:, 0]), sim.run(x)[:, :1])
    finally:
        SIM_OPS.remove("negate_test")
