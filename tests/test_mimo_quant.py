"""Quantized MIMO layers (`qmimo`): the bit-exact simulator (numpy and numba
drivers) against an independent Python-integer reference of
docs/fixed_point.md; the quantizer's output against float."""
from __future__ import annotations

import numpy as np
import pytest

import s4dc
from s4dc import errors
from s4dc.ir import Graph, Layer, Tensor, load_graph, save_graph, verify
from s4dc.ir.tensor import FixedPoint
from s4dc.targets.fixed_sim import FixedSimulator
from s4dc.targets.loihi2 import qmimo, qssm
from s4dc.targets.loihi2.numerics import BitWidths
from conftest import FIXTURES

JIT = [False, pytest.param(True, marks=pytest.mark.skipif(not qssm.AVAILABLE, reason="numba not installed"))]


def random_qmimo_graph(rng, h_in: int, h_out: int, P: int, bw: BitWidths, hot: bool = False) -> Graph:
    """input -> qmimo -> output with random integers on their widths. `hot`:
    large B so that states and outputs hit their rails."""
    wq = (1 << (bw.weight - 1)) - 1
    i = lambda lo, hi, *s: rng.integers(lo, hi + 1, s).astype(np.int64)  # noqa: E731
    fa = bw.a - 1
    r = rng.uniform(0.3, 0.999, P) * 2.0**fa
    th = rng.uniform(0, np.pi, P)
    a_re, a_im = np.floor(r * np.cos(th)).astype(np.int64), np.floor(r * np.sin(th)).astype(np.int64)
    x_shift = max(0, bw.state - bw.message)
    p = {"a_re": a_re, "a_im": a_im, "b_re": i(-wq - 1, wq, P, h_in), "b_im": i(-wq - 1, wq, P, h_in),
         "b_shift": i(0 if hot else 4, 3 if hot else 12, P), "c_re": i(-wq - 1, wq, h_out, P),
         "c_im": i(-wq, wq, h_out, P), "d": i(-wq - 1, wq, h_out, h_in), "bias_mant": i(-3000, 3000, h_out)}
    g = Graph("q")
    msg = FixedPoint(bw.message, 0)
    g.add(Layer("in", "input", [], "in", {"features": h_in, "exp": 0}), Tensor("in", h_in, fmt=msg))
    g.add(Layer("m", "qmimo", ["in"], "m", {"bits": bw.to_json(), "a_frac": fa, "x_shift": x_shift,
                                            "c_shift": int(rng.integers(0, 9)), "d_shift": int(rng.integers(0, 5)),
                                            "bias_exp": int(rng.integers(0, 4)), "relu": bool(rng.integers(2)),
                                            "state_exp": 0}, p), Tensor("m", h_out, fmt=msg))
    g.add(Layer("out", "output", ["m"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", h_out))
    return verify(g)


def reference(l: Layer, u: np.ndarray) -> tuple[np.ndarray, int]:
    """docs/fixed_point.md's qmimo in Python integers, written from the page."""
    p, a = {k: v.tolist() for k, v in l.params.items()}, l.attrs
    bits = a["bits"]
    s_hi, m_hi = (1 << (bits["state"] - 1)) - 1, (1 << (bits["message"] - 1)) - 1
    sat = lambda v, hi: (min(max(v, -hi - 1), hi), int(v > hi or v < -hi - 1))  # noqa: E731

    def rshift(v: int, s: int) -> int:  # floor(v 2^-s)
        return v >> s if s >= 0 else v << -s

    def rround(num: int, s: int) -> int:  # floor(num 2^-s + 1/2)
        return rshift(num + (1 << (s - 1)), s) if s > 0 else rshift(num, s)

    B, T, _ = u.shape
    P, H_out, H_in = len(p["a_re"]), len(p["c_re"]), len(p["d"][0])
    fa = a["a_frac"]
    y = np.zeros((B, T, H_out), np.int64)
    nsat = 0
    for b in range(B):
        xr, xi = [0] * P, [0] * P
        for t in range(T):
            uu = [int(v) for v in u[b, t]]
            mr, mi = [], []
            for k in range(P):
                r = sum(p["b_re"][k][j] * uu[j] for j in range(H_in))
                i = sum(p["b_im"][k][j] * uu[j] for j in range(H_in))
                F = max(fa, p["b_shift"][k], 1)
                pr = p["a_re"][k] * xr[k] - p["a_im"][k] * xi[k]
                pi = p["a_re"][k] * xi[k] + p["a_im"][k] * xr[k]
                nr = rround((pr << (F - fa)) + (r << (F - p["b_shift"][k])), F)
                ni = rround((pi << (F - fa)) + (i << (F - p["b_shift"][k])), F)
                (xr[k], s1), (xi[k], s2) = sat(nr, s_hi), sat(ni, s_hi)
                nsat += s1 + s2
                for x, out in ((xr[k], mr), (xi[k], mi)):
                    v, s3 = sat(rround(x, a["x_shift"]), m_hi)
                    nsat += s3 if a["x_shift"] else 0
                    out.append(v)
            for o in range(H_out):
                acc = sum(p["c_re"][o][k] * mr[k] - p["c_im"][o][k] * mi[k] for k in range(P))
                dd = sum(p["d"][o][j] * uu[j] for j in range(H_in))
                v = rshift(acc, a["c_shift"]) + rshift(dd, a["d_shift"]) + (p["bias_mant"][o] << a["bias_exp"])
                v, s4 = sat(v, m_hi)
                nsat += s4
                y[b, t, o] = max(v, 0) if a["relu"] else v
    return y, nsat


CASES = [(3, 8, 12, BitWidths()), (1, 1, 1, BitWidths()), (5, 2, 20, BitWidths(weight=4, a=12, message=16)),
         (8, 6, 4, BitWidths(weight=6, a=16, state=20, message=20)), (4, 4, 9, BitWidths(weight=8, a=8, state=16,
                                                                                          message=12))]


@pytest.mark.parametrize("jit", JIT, ids=["numpy", "numba"])
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("hot", [False, True], ids=["in_range", "railed"])
def test_simulator_equals_integer_reference(case, hot, jit):
    h_in, h_out, P, bw = CASES[case]
    rng = np.random.default_rng(100 + case)
    g = random_qmimo_graph(rng, h_in, h_out, P, bw, hot)
    mq = (1 << (bw.message - 1)) - 1
    x = rng.integers(-mq // (1 if hot else 64), mq // (1 if hot else 64), (2, 25, h_in)).astype(np.float32)
    sim = FixedSimulator(g, jit=jit)
    got = sim.trace(x)["m"]
    want, nsat = reference(g.layer("m"), x.astype(np.int64))
    np.testing.assert_array_equal(got, want)
    assert sim.saturations["m"] == nsat
    assert (nsat > 0) == hot or not hot
    step = FixedSimulator(g, jit=jit)
    ys = np.concatenate([step.step(x[:, t]) for t in range(x.shape[1])], axis=1)
    np.testing.assert_array_equal(ys, sim.run(x))


@pytest.mark.parametrize("shape", [(9, 60), (1, 300), (20, 37), (3, 1)], ids=lambda s: "B{}_T{}".format(*s))
def test_numpy_and_numba_give_the_same_integers_on_a_wide_layer(shape):
    if not qssm.AVAILABLE:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(5)
    g = random_qmimo_graph(rng, 64, 48, 128, BitWidths())
    x = rng.integers(-(1 << 16), 1 << 16, shape + (64,)).astype(np.float32)
    a, b = FixedSimulator(g, jit=True), FixedSimulator(g, jit=False)
    np.testing.assert_array_equal(a.trace(x)["m"], b.trace(x)["m"])
    assert a.saturations == b.saturations


# (batch, T, sample-steps per block, threads): blocks shorter than T and not
# dividing it, more threads than samples, one sample, one step, odd splits.
BLOCKS = [(9, 31, 7, 2), (5, 40, 16, 3), (1, 33, 8, 2), (3, 1, 256, 2), (16, 12, 256, 4), (2, 25, 1, 2)]


@pytest.mark.parametrize("jit", JIT, ids=["numpy", "numba"])
@pytest.mark.parametrize("blocks", BLOCKS, ids=lambda b: "B{}_T{}_rows{}_thr{}".format(*b))
@pytest.mark.parametrize("case", [0, 2, 4])
def test_blocks_and_threads_give_the_reference_integers(case, blocks, jit, monkeypatch):
    """`qmimo.run_layer` cuts the sequence into blocks of time steps and the
    batch over threads: any cut gives the reference's integers and counts
    (states carried across blocks, x_shift messages, railed values)."""
    B, T, rows, threads = blocks
    monkeypatch.setattr(qmimo, "ROWS", rows)
    monkeypatch.setattr(qmimo, "_cores", lambda: threads)
    monkeypatch.setattr(qmimo, "MIN_PART", 1)
    h_in, h_out, P, bw = CASES[case]
    rng = np.random.default_rng(7 + case)
    g = random_qmimo_graph(rng, h_in, h_out, P, bw, hot=True)
    mq = (1 << (bw.message - 1)) - 1
    x = rng.integers(-mq // 8, mq // 8, (B, T, h_in)).astype(np.float32)
    want, nsat = reference(g.layer("m"), x.astype(np.int64))
    if jit:  # the cut really is over that many threads (threadpoolctl present, PARALLEL set)
        assert qmimo.threads(B, T) == min(B, threads)
    sim = FixedSimulator(g, jit=jit)
    np.testing.assert_array_equal(sim.trace(x)["m"], want)
    assert sim.saturations["m"] == nsat
    assert nsat > 0 or T == 1
    monkeypatch.setattr(qssm, "PARALLEL", False)  # one thread (a worker process of run(workers=N))
    one = FixedSimulator(g, jit=jit)
    np.testing.assert_array_equal(one.trace(x)["m"], want)
    assert one.saturations["m"] == nsat


@pytest.mark.parametrize("name", ["scan_mimo", "scan_mimo_new", "canonical_s5", "canonical_lru"])
def test_quantized_within_five_percent_of_float(name, tmp_path):
    """PTQ at the default widths (8-bit B, C, D; 16-bit Lambda; 24-bit states
    and messages), calibration-like data (the fixtures' inputs are standard normal)."""
    d = np.load(FIXTURES / "mimo" / f"{name}.npz")
    rng = np.random.default_rng(0)
    cal = rng.standard_normal((64,) + d["x"].shape[1:]).astype(np.float32)
    x = rng.standard_normal((16,) + d["x"].shape[1:]).astype(np.float32)
    net = s4dc.compile(FIXTURES / "mimo" / f"{name}.onnx", calibration=cal, place=False)
    q = [l for l in net.graph.layers if l.op == "qmimo"]
    assert q and all(l.params["b_re"].dtype == np.int64 for l in q)
    assert all(l.attrs["bits"]["weight"] == 8 and l.attrs["bits"]["a"] == 16 for l in q)
    ref = s4dc.compile(FIXTURES / "mimo" / f"{name}.onnx", float_only=True).run(x)
    y = net.run(x)
    assert np.sqrt(np.mean((y - ref) ** 2)) <= 0.05 * np.sqrt(np.mean(ref**2))
    save_graph(net.graph, tmp_path / "a")
    h = verify(load_graph(tmp_path / "a"))
    np.testing.assert_array_equal(FixedSimulator(h).run(x), y)


def test_per_layer_weight_bits_reach_the_mimo_layer(tmp_path):
    import json

    (tmp_path / "w5.json").write_text(json.dumps({"LayerName": {"mimo_0": {"weight": 5}}}))
    d = np.load(FIXTURES / "mimo" / "canonical_lru.npz")
    cal = np.random.default_rng(0).standard_normal((32,) + d["x"].shape[1:]).astype(np.float32)
    net = s4dc.compile(FIXTURES / "mimo" / "canonical_lru.onnx", calibration=cal, place=False,
                       config=str(tmp_path / "w5.json"))
    l = net.graph.layer("mimo_0")
    assert l.attrs["bits"]["weight"] == 5
    assert max(np.abs(l.params[k]).max() for k in ("b_re", "b_im", "c_re", "c_im", "d")) <= 16


def test_verifier_refuses_states_wider_than_the_messages_they_send():
    """A qmimo layer's messages are its states' top bits: x_shift below
    state - message bits would send states wider than a message (the
    simulator and Lava skip the message rounding at x_shift 0)."""
    bw = BitWidths(weight=8, a=16, b=16, c=16, state=24, message=16)
    g = random_qmimo_graph(np.random.default_rng(2), 3, 2, 4, bw)
    g.layer("m").attrs["x_shift"] = 7
    with pytest.raises(errors.IRVerificationError) as info:
        verify(g)
    assert str(info.value) == "layer 'm' (qmimo): attribute 'x_shift' = 7 is not a shift in [8, 24]"
