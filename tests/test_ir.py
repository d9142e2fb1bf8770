"""IR: verifier catches malformed graphs; save/load round trip is exact."""
from __future__ import annotations

import numpy as np
import pytest

from s4dc.errors import IRVerificationError
from s4dc.ir import Graph, Layer, Tensor, load_graph, save_graph, verify


def small_graph(rng) -> Graph:
    g = Graph("t")
    g.add(Layer("in", "input", [], "in", {"features": 2}), Tensor("in", 2))
    g.add(Layer("enc", "affine", ["in"], "enc", params={"weight": rng.standard_normal((3, 2)),
                                                         "bias": rng.standard_normal(3)}), Tensor("enc", 3))
    lam = 0.9 * np.exp(1j * rng.uniform(0, 3, (3, 4)))
    g.add(Layer("s", "ssm", ["enc"], "s", {"form": "diagonal", "time": "discrete", "folded": True},
                {"A": lam, "B": rng.standard_normal((3, 4)) + 0j, "C": rng.standard_normal((3, 4)) + 1j,
                 "D": rng.standard_normal(3), "bias": np.zeros(3)}), Tensor("s", 3))
    g.add(Layer("r", "relu", ["s"], "r"), Tensor("r", 3))
    g.add(Layer("ro", "readout", ["r"], "ro", {"mode": "mean"}), Tensor("ro", 3, sequence=False))
    g.add(Layer("out", "output", ["ro"], "out", {"layout": ["B", "F"]}), Tensor("out", 3, sequence=False))
    return g


def test_round_trip_is_exact_and_deterministic(rng, tmp_path):
    g = verify(small_graph(rng))
    save_graph(g, tmp_path / "a")
    h = load_graph(tmp_path / "a")
    for la, lb in zip(g.layers, h.layers):
        assert (la.name, la.op, la.inputs, la.output, la.attrs) == (lb.name, lb.op, lb.inputs, lb.output, lb.attrs)
        assert la.params.keys() == lb.params.keys()
        for k in la.params:
            assert la.params[k].dtype == lb.params[k].dtype and np.array_equal(la.params[k], lb.params[k])
    save_graph(h, tmp_path / "b")
    for f in ("graph.json", "params.npz"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


@pytest.mark.parametrize("breakage,message", [
    (lambda g: g.layer("enc").params.update(weight=np.zeros((3, 5))), "parameter 'weight' has shape (3, 5), expected (3, 2)"),
    (lambda g: g.layer("s").params.update(A=np.zeros((3, 4))), "parameter 'A' must be complex"),
    (lambda g: g.layer("s").params["C"].__setitem__((0, 0), np.nan), "parameter 'C' holds NaN or Inf"),
    (lambda g: g.layer("r").inputs.__setitem__(0, "nowhere"), "reads tensor 'nowhere' before any layer writes it"),
    (lambda g: g.layer("ro").attrs.update(mode="max"), "attribute 'mode' must be 'last' or 'mean'"),
    (lambda g: g.tensors["ro"].__setattr__("sequence", True), "declared (3, seq=True), rule gives (3, seq=False)"),
    (lambda g: g.layer("out").attrs.update(layout=["B", "T", "F"]), "layout"),
    (lambda g: g.layers.append(g.layers[0]), "exactly one input layer"),
    (lambda g: g.layer("s").attrs.update(form="dense"), "dense A must be (H=3, N, N)"),
])
def test_verifier_rejects(breakage, message, rng):
    g = small_graph(rng)
    breakage(g)
    with pytest.raises(IRVerificationError) as e:
        verify(g)
    assert message in str(e.value)
