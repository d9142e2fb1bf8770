"""Each pass on its own: it does its one job and keeps the network's output."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from s4dc.errors import IllConditionedError, UnstableSystemError
from s4dc.ir import Graph, Layer, Tensor, verify
from s4dc.options import CompileOptions
from s4dc.passes import PASSES
from s4dc.targets.float_exec import FloatExecutor

OPTS = CompileOptions()


def ssm_graph(params, attrs, H) -> Graph:
    g = Graph("p")
    g.add(Layer("in", "input", [], "in", {"features": H}), Tensor("in", H))
    base = {"D": np.linspace(-1, 1, H), "bias": np.zeros(H)}
    g.add(Layer("s", "ssm", ["in"], "s", attrs, {**base, **params}), Tensor("s", H))
    g.add(Layer("out", "output", ["s"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", H))
    return verify(g)


def run(g, x):
    return FloatExecutor(g).trace(x)["out"]


def test_discretize_zoh_matches_matrix_exponential(rng):
    H, N = 3, 4
    A = -rng.uniform(0.1, 1, (H, N)) + 1j * rng.uniform(0, 5, (H, N))
    B = rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N))
    dt = rng.uniform(0.01, 0.3, H)
    g = ssm_graph({"A": A, "B": B, "C": np.ones((H, N)) + 0j, "dt": dt},
                  {"form": "diagonal", "time": "continuous", "discretization": "zoh", "folded": True}, H)
    out, _ = PASSES["discretize"](g, OPTS)
    s = out.layer("s")
    for h in range(H):  # ZOH of x' = A x + B u via the augmented matrix exponential
        M = np.zeros((N + 1, N + 1), complex)
        M[:N, :N], M[:N, N] = np.diag(A[h]), B[h]
        E = scipy.linalg.expm(M * dt[h])
        np.testing.assert_allclose(s.params["A"][h], np.diag(E[:N, :N]), rtol=1e-12)
        np.testing.assert_allclose(s.params["B"][h], E[:N, N], rtol=1e-10)
    assert s.attrs["time"] == "discrete" and "dt" not in s.params


def test_discretize_bilinear(rng):
    H, N = 2, 3
    A = -rng.uniform(0.1, 1, (H, N)) + 1j * rng.uniform(0, 5, (H, N))
    dt = np.array([0.1, 0.2])
    g = ssm_graph({"A": A, "B": np.ones((H, N)) + 0j, "C": np.ones((H, N)) + 0j, "dt": dt},
                  {"form": "diagonal", "time": "continuous", "discretization": "bilinear", "folded": True}, H)
    s = PASSES["discretize"](g, OPTS)[0].layer("s")
    np.testing.assert_allclose(s.params["A"], (1 + dt[:, None] * A / 2) / (1 - dt[:, None] * A / 2), rtol=1e-13)
    np.testing.assert_allclose(s.params["B"], dt[:, None] / (1 - dt[:, None] * A / 2), rtol=1e-13)


def test_discretize_refuses_unstable_continuous(rng):
    A = np.array([[-0.5 + 1j, 0.01 + 2j]])
    g = ssm_graph({"A": A, "B": np.ones((1, 2)) + 0j, "C": np.ones((1, 2)) + 0j, "dt": np.array([0.1])},
                  {"form": "diagonal", "time": "continuous", "discretization": "zoh", "folded": True}, 1)
    with pytest.raises(UnstableSystemError, match="real part >= 0"):
        PASSES["discretize"](g, OPTS)


def test_diagonalize_then_fold_keep_the_output(rng):
    H, N = 4, 6
    A = np.empty((H, N, N))
    for h in range(H):  # real matrices with complex-conjugate and real eigenvalues
        Q = rng.standard_normal((N, N))
        blocks = np.zeros((N, N))
        for k in range(0, N - 2, 2):
            r, th = rng.uniform(0.5, 0.95), rng.uniform(0.1, 3)
            blocks[k:k + 2, k:k + 2] = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        blocks[N - 2, N - 2], blocks[N - 1, N - 1] = 0.7, -0.4
        A[h] = Q @ blocks @ np.linalg.inv(Q)
    g = ssm_graph({"A": A, "B": rng.standard_normal((H, N)), "C": rng.standard_normal((H, N))},
                  {"form": "dense", "time": "discrete", "folded": False}, H)
    x = rng.standard_normal((2, 30, H))
    ref = run(g, x)
    d, ch = PASSES["diagonalize"](g, OPTS)
    assert d.layer("s").attrs["form"] == "diagonal" and ch["eigenvector_condition"]["s"] > 1
    np.testing.assert_allclose(run(d, x), ref, rtol=1e-9, atol=1e-10)
    f, ch = PASSES["fold_conjugates"](d, OPTS)
    assert f.layer("s").params["A"].shape == (H, 4)  # 2 pairs + 2 real modes
    assert np.all(f.layer("s").params["A"].imag >= 0)
    np.testing.assert_allclose(run(f, x), ref, rtol=1e-9, atol=1e-10)


def test_diagonalize_refuses_defective_matrix():
    A = np.array([[[0.9, 1.0], [1e-20, 0.9]]])
    g = ssm_graph({"A": A, "B": np.ones((1, 2)), "C": np.ones((1, 2))},
                  {"form": "dense", "time": "discrete", "folded": False}, 1)
    with pytest.raises(IllConditionedError, match=r"condition number .* > 1e\+08"):
        PASSES["diagonalize"](g, OPTS)


def test_canonicalize_fuses_affines_and_folds_skip(rng):
    H = 3
    g = Graph("c")
    g.add(Layer("in", "input", [], "in", {"features": 2}), Tensor("in", 2))
    g.add(Layer("a1", "affine", ["in"], "a1", params={"weight": rng.standard_normal((H, 2)), "bias": np.ones(H)}), Tensor("a1", H))
    g.add(Layer("a2", "affine", ["a1"], "a2", params={"weight": np.eye(H), "bias": rng.standard_normal(H)}), Tensor("a2", H))
    lam = 0.9 * np.exp(1j * rng.uniform(0, 3, (H, 2)))
    g.add(Layer("s", "ssm", ["a2"], "s", {"form": "diagonal", "time": "discrete", "folded": True},
                {"A": lam, "B": np.ones((H, 2)) + 0j, "C": rng.standard_normal((H, 2)) + 0j,
                 "D": np.zeros(H), "bias": np.zeros(H)}), Tensor("s", H))
    d = rng.standard_normal(H)
    g.add(Layer("skip", "affine", ["a2"], "skip", params={"weight": np.diag(d), "bias": np.zeros(H)}), Tensor("skip", H))
    g.add(Layer("sum", "add", ["s", "skip"], "sum"), Tensor("sum", H))
    g.add(Layer("out", "output", ["sum"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", H))
    verify(g)
    x = rng.standard_normal((2, 10, 2))
    ref = run(g, x)
    c, ch = PASSES["canonicalize"](g, OPTS)
    assert [l.op for l in c.layers] == ["input", "affine", "ssm", "output"]
    assert ch == {"affines_fused": 1, "skips_folded": 1, "dead_removed": 1}
    np.testing.assert_allclose(c.layer("s").params["D"], d)
    np.testing.assert_allclose(run(c, x), ref, rtol=1e-12, atol=1e-12)


def test_canonicalize_keeps_bottleneck(rng):
    g = Graph("b")
    g.add(Layer("in", "input", [], "in", {"features": 8}), Tensor("in", 8))
    g.add(Layer("a1", "affine", ["in"], "a1", params={"weight": rng.standard_normal((1, 8)), "bias": np.zeros(1)}), Tensor("a1", 1))
    g.add(Layer("a2", "affine", ["a1"], "a2", params={"weight": rng.standard_normal((8, 1)), "bias": np.zeros(8)}), Tensor("a2", 8))
    g.add(Layer("out", "output", ["a2"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", 8))
    c, _ = PASSES["canonicalize"](verify(g), OPTS)
    assert [l.op for l in c.layers].count("affine") == 2  # 8x8 fused would be larger than 8+8
