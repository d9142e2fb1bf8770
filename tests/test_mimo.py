"""MIMO diagonal state spaces (S5, LRU, dense coupled recurrences): the IR op,
the frontend forms against onnxruntime, the float passes, bad input."""
from __future__ import annotations

import numpy as np
import pytest

import s4dc
from s4dc import errors
from s4dc.cli import main
from s4dc.frontend.canonical import CanonicalModel
from s4dc.ir import Graph, Layer, Tensor, load_graph, save_graph, verify
from s4dc.passes import PASSES
from conftest import FIXTURES, ort_run

MIMO_DIR = FIXTURES / "mimo"
GOOD = ["scan_mimo", "scan_mimo_new", "canonical_s5", "canonical_lru"]


@pytest.mark.parametrize("name", GOOD)
@pytest.mark.parametrize("batch", [1, 3])
def test_form_matches_onnxruntime(name, batch):
    path = MIMO_DIR / f"{name}.onnx"
    x = np.load(MIMO_DIR / f"{name}.npz")["x"][:batch]
    ref = ort_run(path, x)
    net = s4dc.compile(path, float_only=True)
    assert any(l.op == "mimo" for l in net.graph.layers)
    y = net.run(x)
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()


def test_stored_outputs_are_onnxruntime_s():
    for name in GOOD:
        d = np.load(MIMO_DIR / f"{name}.npz")
        np.testing.assert_array_equal(ort_run(MIMO_DIR / f"{name}.onnx", d["x"]), d["y"])


def test_scan_mimo_is_diagonalized_and_folded():
    net = s4dc.compile(MIMO_DIR / "scan_mimo.onnx", float_only=True)
    l = net.graph.layer("mimo_scan")
    assert (l.attrs["form"], l.attrs["time"], l.attrs["folded"]) == ("diagonal", "discrete", True)
    # 12 real states = 6 conjugate pairs, 3 inputs, 8 outputs
    assert l.params["A"].shape == (6,) and l.params["B"].shape == (6, 3) and l.params["C"].shape == (8, 6)
    assert np.all(np.abs(l.params["A"]) < 1)
    # slowest decay first (the pass's fixed order)
    assert np.all(np.diff(np.abs(l.params["A"])) <= 0)


def test_coupled_scan_fixture_is_now_a_mimo_layer():
    """The S4D fixture whose channel 0 reads channel 1's state: accepted as MIMO."""
    path = FIXTURES / "scan" / "bad_coupled.onnx"
    d = np.load(FIXTURES / "scan" / "bad_coupled.npz")
    net = s4dc.compile(path, float_only=True)
    assert [l.op for l in net.graph.layers if l.opdef.recurrent] == ["mimo"]
    assert np.abs(net.run(d["x"]) - d["y"]).max() <= 1e-4 * np.abs(d["y"]).max()


@pytest.mark.parametrize("name", GOOD)
def test_streaming_four_times_the_length_stays_bounded(name):
    """Past the file's length the recurrence keeps running (as on Loihi 2):
    stable modes keep it bounded, and token by token equals the whole run."""
    net = s4dc.compile(MIMO_DIR / f"{name}.onnx", float_only=True)
    T = np.load(MIMO_DIR / f"{name}.npz")["x"].shape[1]
    x = np.random.default_rng(3).standard_normal((2, 4 * T, net.graph.input_layer.attrs["features"])).astype(np.float32)
    y = net.run(x)
    assert np.all(np.isfinite(y))
    assert np.abs(y[:, 3 * T:]).max() <= 3 * np.abs(y[:, :T]).max()
    net.reset()
    steps = np.stack([net.step(x[:, t]) for t in range(0, 2 * T)], axis=1)[:, :, 0]
    np.testing.assert_allclose(steps, y[:, :2 * T], rtol=1e-5, atol=1e-5 * np.abs(y).max())


# Past its 32 taps the realized Conv follows its system, not the truncated kernel: warned, and meant here.
@pytest.mark.filterwarnings("ignore::s4dc.errors.KernelLengthWarning")
@pytest.mark.parametrize("name", [f"mimo/{n}" for n in GOOD] + ["torch_mimo/conv_mimo_leftpad_dynamo"])
def test_quantized_streaming_four_times_the_length_stays_bounded(name):
    """The integer network, calibrated at the file's length T, streamed for
    4T steps (as Loihi 2 runs it): no value saturates, the last T steps stay
    within 3x the first T's peak and within 5% RMS of the float network on the
    same stream, and token by token gives the same integers as the whole run."""
    d = np.load(FIXTURES / f"{name}.npz")
    T, F = d["x"].shape[1:]
    cal = np.random.default_rng(0).standard_normal((64, T, F)).astype(np.float32)
    net = s4dc.compile(FIXTURES / f"{name}.onnx", calibration=cal, place=False)
    assert any(l.op == "qmimo" for l in net.graph.layers)
    x = np.random.default_rng(3).standard_normal((2, 4 * T, F)).astype(np.float32)
    y = net.run(x)
    assert set(net.saturations.values()) == {0}
    assert np.all(np.isfinite(y)) and np.abs(y[:, 3 * T:]).max() <= 3 * np.abs(y[:, :T]).max()
    ref = s4dc.compile(FIXTURES / f"{name}.onnx", float_only=True).run(x)
    assert np.sqrt(np.mean((y - ref) ** 2)) <= 0.05 * np.sqrt(np.mean(ref ** 2))
    net.reset()
    steps = np.concatenate([net.step(x[:, t]) for t in range(2 * T)], axis=1)
    np.testing.assert_array_equal(steps, y[:, :2 * T])


BAD = [
    ("mimo/bad_mimo_unstable", errors.UnstableSystemError,
     "layer 'mimo_scan' (mimo, from mimo_scan): mode 4 of the shared state has |lambda| = 1.03 >= 1; Loihi 2 "
     "streams the recurrence without end, so the state matrix must be stable"),
    ("mimo/bad_mimo_illconditioned", errors.IllConditionedError,
     "layer 'mimo_scan' (mimo, from mimo_scan): eigenvector matrix of the shared 12-state A has condition number "
     "1.15e+12 > 1e+08; A is (nearly) defective and cannot be diagonalized reliably"),
    ("mimo/bad_mimo_nonlinear", errors.UnsupportedPatternError,
     "node 'mimo_scan' (Scan): the body is not linear in (state, input) (deviation 2); s4dc maps linear state "
     "updates x' = A x + B u, y = C x + D u"),
    ("mimo/bad_mimo_timevarying", errors.UnsupportedPatternError,
     "node 'mimo_scan' (Scan): the state update has a constant term (|x'| = 1 from a zero state and input): the "
     "body is time-varying; s4dc maps time-invariant x' = A x + B u"),
    # exported by torch (a step function run by torch's scan) with a static batch of 4
    ("torch_mimo/bad_scan_tanh_b4_dynamo", errors.UnsupportedPatternError,
     "node 'node_scan__1' (Scan): the body is not linear in (state, input) (deviation 1.7); s4dc maps linear "
     "state updates x' = A x + B u, y = C x + D u"),
    ("torch_mimo/bad_scan_mimo_unstable_b4_dynamo", errors.UnstableSystemError,
     "layer 'node_scan__1' (mimo, from node_scan__1): mode 2 of the shared state has |lambda| = 1.03 >= 1; Loihi 2 "
     "streams the recurrence without end, so the state matrix must be stable"),
]


@pytest.mark.parametrize("name,cls,text", BAD, ids=[b[0].split("/")[1] for b in BAD])
def test_bad_mimo_is_refused_cleanly(name, cls, text, tmp_path, capsys):
    """One line naming the node and what was measured; exit 2; nothing written."""
    path = FIXTURES / f"{name}.onnx"
    with pytest.raises(cls) as info:
        s4dc.compile(path)
    assert str(info.value) == text
    out = tmp_path / "net"
    capsys.readouterr()
    assert main([str(path), "-o", str(out)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"s4dc: error: {text}"
    assert not out.exists()


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_unstable_canonical_mimo_is_refused(kind, tmp_path):
    """The canonical form (S5's s4dc.MIMO, LRU's s4dc.MIMODiscrete) with one
    unstable mode of four."""
    rng = np.random.default_rng(0)
    B, C = (rng.standard_normal(s) + 1j * rng.standard_normal(s) for s in ((4, 3), (2, 4)))
    m = CanonicalModel(features=3, time=20)
    if kind == "discrete":
        m.mimo(np.array([0.5, 0.9j, 1.02, 0.3 + 0.3j]), B, C, np.zeros((2, 3)))
        text = "node 'mimo_0' (MIMODiscrete): mode 2 has an eigenvalue with |lambda| = 1.02 >= 1; the state " \
               "matrix must be stable"
    else:
        m.mimo(np.array([-0.5, 0.1 + 1j, -0.2, -0.3 + 0.3j]), B, C, np.zeros((2, 3)), dt=np.full(4, 0.1))
        text = "layer 'mimo_0' (mimo, from mimo_0): mode 1 has a continuous eigenvalue 0.1+1j with real part >= 0; the " \
               "state matrix must be stable"
    path = tmp_path / "m.onnx"
    path.write_bytes(m.to_onnx().SerializeToString())
    with pytest.raises(errors.UnstableSystemError) as info:
        s4dc.compile(path.read_bytes())
    assert str(info.value) == text
    assert main([str(path), "-o", str(tmp_path / "net")]) == 2
    assert not (tmp_path / "net").exists()


def _graph(layer: Layer, h_in: int, h_out: int) -> Graph:
    g = Graph("m")
    g.add(Layer("in", "input", [], "in", {"features": h_in}), Tensor("in", h_in, True))
    g.add(layer, Tensor(layer.output, h_out, True))
    g.add(Layer("out", "output", [layer.output], "out", {"layout": ["B", "T", "F"]}), Tensor("out", h_out, True))
    return g


def _mimo_layer(rng, P=5, h_in=3, h_out=4, **attrs) -> Layer:
    c = lambda *s: rng.standard_normal(s) + 1j * rng.standard_normal(s)  # noqa: E731
    return Layer("m", "mimo", ["in"], "m", {"form": "diagonal", "time": "continuous", "discretization": "zoh",
                                             "folded": True, **attrs},
                 {"A": -rng.uniform(0.1, 1, P) + 1j * rng.uniform(0, 2, P), "B": c(P, h_in), "C": c(h_out, P),
                  "D": rng.standard_normal((h_out, h_in)), "bias": rng.standard_normal(h_out),
                  "dt": rng.uniform(0.01, 0.1, P)})


def test_mimo_round_trip_is_exact(rng, tmp_path):
    g = verify(_graph(_mimo_layer(rng), 3, 4))
    save_graph(g, tmp_path / "a")
    h = verify(load_graph(tmp_path / "a"))
    for k, v in g.layer("m").params.items():
        np.testing.assert_array_equal(h.layer("m").params[k], v)
        assert h.layer("m").params[k].dtype == v.dtype
    save_graph(h, tmp_path / "b")
    assert (tmp_path / "a" / "params.npz").read_bytes() == (tmp_path / "b" / "params.npz").read_bytes()


@pytest.mark.parametrize("edit,message", [
    (lambda l: l.params.update(B=l.params["B"][:, :2]), "parameter 'B' has shape (5, 2), expected (5, 3)"),
    (lambda l: l.params.update(C=l.params["C"][:, :4]), "parameter 'C' has shape (4, 4), expected (4, 5)"),
    (lambda l: l.params.update(D=l.params["D"].T), "parameter 'D' has shape (3, 4), expected (4, 3)"),
    (lambda l: l.params.update(A=l.params["A"].real), "parameter 'A' must be complex"),
    (lambda l: l.params.update(dt=-l.params["dt"]), "time steps dt must be positive"),
    (lambda l: l.attrs.update(form="dense"), "dense A must be (P, P), got (5,)"),
    (lambda l: l.attrs.update(time="later"), "attribute 'time' must be 'continuous' or 'discrete'"),
    (lambda l: l.params.update(A=np.diag(l.params["A"].real), B=l.params["B"].real, C=l.params["C"].real)
     or l.attrs.update(form="dense"), "a dense (real) state space cannot be conjugate-folded"),
])
def test_verifier_rejects_malformed_mimo(rng, edit, message):
    l = _mimo_layer(rng)
    edit(l)
    with pytest.raises(errors.IRVerificationError) as info:
        verify(_graph(l, 3, 4))
    assert message in str(info.value)


def test_dense_continuous_needs_one_time_step(rng):
    l = _mimo_layer(rng, folded=False)
    l.params.update(A=-np.eye(5) * 0.5, B=l.params["B"].real, C=l.params["C"].real)
    l.attrs["form"] = "dense"
    with pytest.raises(errors.IRVerificationError, match="one time step dt for all modes"):
        verify(_graph(l, 3, 4))
    l.params["dt"] = np.full(5, 0.1)
    verify(_graph(l, 3, 4))


def test_passes_keep_the_float_output(rng):
    """diagonalize -> discretize -> fold on a dense continuous MIMO layer:
    the float output is unchanged (to rounding)."""
    from s4dc.targets.float_exec import FloatExecutor

    P, h_in, h_out = 6, 3, 4
    M = rng.standard_normal((P, P))
    A = M - (np.abs(np.linalg.eigvals(M)).max() + 0.3) * np.eye(P)  # continuous, stable, non-normal
    l = Layer("m", "mimo", ["in"], "m", {"form": "dense", "time": "continuous", "discretization": "zoh",
                                         "folded": False},
              {"A": A, "B": rng.standard_normal((P, h_in)), "C": rng.standard_normal((h_out, P)),
               "D": rng.standard_normal((h_out, h_in)), "bias": rng.standard_normal(h_out), "dt": np.full(P, 0.05)})
    g = verify(_graph(l, h_in, h_out))
    x = rng.standard_normal((2, 30, h_in))
    # the dense continuous reference: exact ZOH by the matrix exponential
    from scipy.linalg import expm

    Ab = expm(0.05 * A)
    Bb = np.linalg.solve(A, (Ab - np.eye(P)) @ l.params["B"])
    s, ref = np.zeros((2, P)), []
    for t in range(30):
        s = s @ Ab.T + x[:, t] @ Bb.T
        ref.append(s @ l.params["C"].T + x[:, t] @ l.params["D"].T + l.params["bias"])
    ref = np.stack(ref, axis=1)
    for name in ("diagonalize", "discretize", "fold_conjugates"):
        g, _ = PASSES[name](g)
        verify(g)
    m = g.layer("m")
    assert (m.attrs["form"], m.attrs["time"], m.attrs["folded"]) == ("diagonal", "discrete", True)
    assert m.params["A"].shape[0] <= P
    np.testing.assert_allclose(FloatExecutor(g).trace(x)["m"], ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_repeated_conjugate_pairs_fold(rng):
    """A dense discrete A with the same damped rotation twice (and a repeated
    real pole): each repeated eigenvalue's eigenvectors are one basis of its
    eigenspace among many, so single modes need not mirror their partners,
    only each eigenvalue's summed residue does. It folds to half the complex
    modes, output unchanged (it was left unfolded, 2x the neurons)."""
    from s4dc.targets.float_exec import FloatExecutor

    r, th = 0.9, 0.7
    rot = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    R = np.zeros((6, 6))
    R[:2, :2] = R[2:4, 2:4] = rot
    R[4, 4] = R[5, 5] = 0.5
    A = R   # block diagonal: the eigenvalues repeat exactly (in a random basis they differ by rounding)
    l = Layer("m", "mimo", ["in"], "m", {"form": "dense", "time": "discrete", "folded": False},
              {"A": A, "B": rng.standard_normal((6, 3)), "C": rng.standard_normal((4, 6)),
               "D": rng.standard_normal((4, 3)), "bias": rng.standard_normal(4)})
    g = verify(_graph(l, 3, 4))
    x = rng.standard_normal((2, 40, 3))
    ref = FloatExecutor(g).trace(x)["m"]
    for name in ("diagonalize", "fold_conjugates"):
        g, _ = PASSES[name](g)
        verify(g)
    m = g.layer("m")
    assert m.attrs["folded"] is True and m.params["A"].shape[0] == 4   # 2 complex (one per pair) + 2 real
    np.testing.assert_allclose(FloatExecutor(g).trace(x)["m"], ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_lru_stays_complex_when_not_conjugate_symmetric(rng):
    """A genuinely complex system (no conjugate partners) is left unfolded."""
    l = _mimo_layer(rng, folded=False)
    l.attrs["time"] = "discrete"
    del l.params["dt"], l.attrs["discretization"]
    l.params["A"] = 0.9 * np.exp(1j * rng.uniform(0.1, 3, 5))
    g, changes = PASSES["fold_conjugates"](verify(_graph(l, 3, 4)))
    assert g.layer("m").attrs["folded"] is False and changes == {}


def test_edited_mimo_body_is_refused():
    import onnx

    m = onnx.load(MIMO_DIR / "canonical_lru.onnx")
    fn = next(f for f in m.functions if f.name == "MIMODiscrete")
    const = next(n for n in fn.node if n.output[0] == "two")
    const.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(np.float32(3), "two"))
    with pytest.raises(errors.FunctionBodyError) as info:
        s4dc.compile(m, float_only=True)
    assert "does not compute the op (relative deviation" in str(info.value) and "mimo_0" in str(info.value)


def test_multichannel_s4d_is_mimo_with_structure(rng):
    """state-spaces' S4D with channels > 1 (C (channels, H, N)), written as
    s4dc.MIMO: onnxruntime, s4dc and the layer's own formula agree."""
    from s4dc.frontend.canonical import CanonicalModel

    H, N, ch, T = 3, 4, 2, 30
    dt = np.exp(rng.uniform(np.log(0.01), np.log(0.3), H))
    A = -0.5 + 1j * np.pi * np.arange(N)[None, :].repeat(H, 0)
    B = rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N))
    C = rng.standard_normal((ch, H, N)) + 1j * rng.standard_normal((ch, H, N))
    D = rng.standard_normal((ch, H))
    m = CanonicalModel(features=H, time=T).s4d_channels(dt, A, B, C, D).to_onnx()
    x = rng.standard_normal((2, T, H)).astype(np.float32)
    ref = ort_run(m, x)
    # the multi-channel S4D itself: per channel h, ZOH, y[c, h] = 2 Re(C[c, h] . x_h) + D[c, h] u_h
    lam = np.exp(dt[:, None] * A)
    Bb = (lam - 1) / A * B
    s, want = np.zeros((2, H, N), complex), []
    for t in range(T):
        s = lam * s + Bb * x[:, t, :, None]
        y = 2 * np.einsum("chn,bhn->bch", C, s).real + D[None] * x[:, t, None, :]
        want.append(y.reshape(2, ch * H))
    want = np.stack(want, 1)
    assert np.abs(ref - want).max() <= 1e-4 * np.abs(want).max()
    net = s4dc.compile(m, float_only=True)
    assert np.abs(net.run(x) - ref).max() <= 1e-4 * np.abs(ref).max()
    l = next(l for l in net.graph.layers if l.op == "mimo")
    assert l.params["A"].shape == (H * N,) and l.params["C"].shape == (ch * H, H * N)


def test_mimo_without_modes_is_its_affine(rng, tmp_path):
    """P = 0 (a canonical node with no modes; the realization of a full Conv
    whose delayed taps are zero): D u + bias, lowered to an affine, so it
    quantizes and places (the empty modes stage crashed the partitioner)."""
    m = CanonicalModel(features=2, time=10)
    D = rng.standard_normal((3, 2))
    m.mimo(np.zeros(0, complex), np.zeros((0, 2), complex), np.zeros((3, 0), complex), D)
    path = tmp_path / "p0.onnx"
    path.write_bytes(m.to_onnx().SerializeToString())
    x = rng.standard_normal((2, 10, 2)).astype(np.float32)
    ref = ort_run(path, x)
    f = s4dc.compile(path, float_only=True)
    assert [l.op for l in f.graph.layers] == ["input", "affine", "output"]
    assert np.abs(f.run(x) - ref).max() <= 1e-6 * np.abs(ref).max()
    out = tmp_path / "net"
    assert main([str(path), "-o", str(out), "-q"]) == 0
    q = s4dc.load(out)
    y = q.run(x)
    assert np.sqrt(np.mean((y - ref) ** 2)) <= 0.05 * np.sqrt(np.mean(ref ** 2))
