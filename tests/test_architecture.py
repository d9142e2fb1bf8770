"""The structure the rest of the compiler relies on: ops defined once in a
registry, passes that check what they require, the IR verifier refusing
malformed quantized layers, and sink_readout's one job."""
from __future__ import annotations

import numpy as np
import pytest

from s4dc.errors import IRVerificationError
from s4dc.ir import Graph, Layer, Tensor, verify
from s4dc.ir.ops import OPS, SSM, OpDef, register_op
from s4dc.passes import PASSES
from s4dc.passes.base import PassPreconditionError
from s4dc.registry import DuplicateRegistration, Registry
from s4dc.targets.float_exec import FloatExecutor
from s4dc.targets.loihi2.numerics import BitWidths


def _ssm_net(rng, attrs: dict, params: dict, H: int = 2) -> Graph:
    g = Graph("t")
    g.add(Layer("in", "input", [], "in", {"features": H}), Tensor("in", H))
    base = {"D": np.zeros(H), "bias": np.zeros(H)}
    g.add(Layer("s", "ssm", ["in"], "s", attrs, {**base, **params}), Tensor("s", H))
    g.add(Layer("out", "output", ["s"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", H))
    return verify(g)


def test_registry_refuses_duplicates():
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(DuplicateRegistration, match="^thing: 'a' is registered twice$"):
        reg.add("a", 2)

    class Again(OpDef):
        name = "ssm"

    with pytest.raises(DuplicateRegistration, match="^IR op: 'ssm' is registered twice$"):
        register_op(Again)
    assert OPS["ssm"] is SSM  # the original stays


def test_ops_carry_their_traits():
    siso = ["input", "affine", "conv", "ssm", "relu", "add", "readout", "output", "qaffine", "qssm", "qadd"]
    assert [n for n in siso if OPS[n].quantized] == ["qaffine", "qssm", "qadd"]
    assert [n for n in siso if OPS[n].quantizable] == ["affine", "ssm", "add"]
    assert [n for n in siso if OPS[n].recurrent] == ["conv", "ssm", "qssm"]
    assert [n for n in siso if OPS[n].structural] == ["input", "output"]
    assert [OPS[n].synapse_stages for n in ("affine", "ssm", "add", "relu", "qaffine", "qssm", "qadd")] == \
        [1, 2, 1, 1, 1, 2, 1]
    assert not OPS["readout"].on_chip


def test_quantize_refuses_an_unfolded_state_space(rng):
    # Before the requirement check this compiled to exactly twice the float
    # output (the quantizer reads C as carrying the folding gain 2).
    H, N = 2, 3
    lam = 0.9 * np.exp(1j * rng.uniform(0, 1, (H, N)))
    g = _ssm_net(rng, {"form": "diagonal", "time": "discrete"},
                 {"A": lam, "B": np.ones((H, N)) + 0j, "C": np.ones((H, N)) + 0j})
    ctx = {"calibration_x": rng.standard_normal((4, 16, H)), "precision": {"__default__": BitWidths()}}
    with pytest.raises(PassPreconditionError) as e:
        PASSES["quantize"](g, type("Ctx", (), ctx)())
    assert str(e.value) == ("pass 'quantize' needs a folded graph: layer 's' (ssm) keeps both modes of each "
                            "conjugate pair (fold_conjugates first)")


@pytest.mark.parametrize("attrs, params, prop, why", [
    ({"form": "dense", "time": "discrete"}, {"A": np.eye(2)[None].repeat(2, 0) * 0.5, "B": np.ones((2, 2)),
                                            "C": np.ones((2, 2))},
     "diagonal", "has a dense state matrix (diagonalize first)"),
    ({"form": "diagonal", "time": "continuous", "discretization": "zoh", "folded": True},
     {"A": -np.ones((2, 2)) + 0j, "B": np.ones((2, 2)) + 0j, "C": np.ones((2, 2)) + 0j, "dt": np.ones(2)},
     "discrete", "is continuous-time (discretize first)"),
])
def test_quantize_names_the_missing_property(rng, attrs, params, prop, why):
    g = _ssm_net(rng, attrs, params)
    with pytest.raises(PassPreconditionError, match=f"needs a {prop} graph: layer 's' \\(ssm\\) "):
        PASSES["quantize"](g, None)
    with pytest.raises(PassPreconditionError) as e:
        PASSES["quantize"](g, None)
    assert str(e.value).endswith(why)


def _quantized_net(rng) -> Graph:
    H, N = 2, 3
    lam = 0.8 * np.exp(1j * rng.uniform(0.1, 1, (H, N)))
    g = _ssm_net(rng, {"form": "diagonal", "time": "discrete", "folded": True},
                 {"A": lam, "B": rng.standard_normal((H, N)) + 0j, "C": rng.standard_normal((H, N)) + 0j})
    ctx = type("Ctx", (), {"calibration_x": rng.standard_normal((4, 16, H)),
                           "precision": {"__default__": BitWidths()}})()
    return PASSES["quantize"](g, ctx)[0]


@pytest.mark.parametrize("edit, message", [
    (lambda l: l.params.update(a_re=l.params["a_re"].astype(np.float64)), "parameter 'a_re' must be integer, got float64"),
    (lambda l: l.params.update(b_re=l.params["b_re"] + (1 << 15)), "parameter 'b_re' exceeds 16 signed bits"),
    (lambda l: l.params.update(c_shift=l.params["c_shift"] * 0 + 41),
     "parameter 'c_shift' holds shifts outside [-24, 40]"),
    (lambda l: l.attrs.update(a_frac=7), "a_frac 7 must be a bits - 1 = 15"),
    (lambda l: l.params.update(a_re=l.params["a_re"] * 0 + (1 << 15) - 1, a_im=l.params["a_im"] * 0 + 256),
     "quantized eigenvalue with |lambda| = 1.000000 >= 1"),
    (lambda l: l.attrs.pop("bits"), "attribute 'bits' missing"),
    # widths a graph.json may be edited to: each checked against what Loihi 2 holds
    (lambda l: l.attrs["bits"].pop("state"), "attribute 'bits': state bits missing"),
    (lambda l: l.attrs["bits"].update(weight=16), "attribute 'bits': weight bits = 16; Loihi 2 holds 2 to 8"),
    (lambda l: l.attrs["bits"].update(message=30), "attribute 'bits': message bits = 30; Loihi 2 holds 8 to 24"),
    (lambda l: l.attrs["bits"].update(a="16"), "attribute 'bits': a bits = '16'; Loihi 2 holds 4 to 16"),
])
def test_verifier_refuses_malformed_quantized_layers(rng, edit, message):
    q = _quantized_net(rng)
    layer = next(l for l in q.layers if l.op == "qssm")
    edit(layer)
    with pytest.raises(IRVerificationError) as e:
        verify(q)
    assert str(e.value) == f"layer 's' (qssm): {message}"


def test_sink_readout_moves_the_affine_before_the_readout(rng):
    H, F = 3, 2
    g = Graph("r")
    g.add(Layer("in", "input", [], "in", {"features": H}), Tensor("in", H))
    g.add(Layer("ro", "readout", ["in"], "ro", {"mode": "mean"}), Tensor("ro", H, sequence=False))
    w, b = rng.standard_normal((F, H)), rng.standard_normal(F)
    g.add(Layer("fc", "affine", ["ro"], "fc", {}, {"weight": w, "bias": b}), Tensor("fc", F, sequence=False))
    g.add(Layer("out", "output", ["fc"], "out", {"layout": ["B", "F"]}), Tensor("out", F, sequence=False))
    verify(g)
    moved, changes = PASSES["sink_readout"](g, None)
    assert changes == {"moved_before_readout": ["fc"]}
    assert [l.name for l in moved.layers] == ["in", "fc", "ro", "out"]
    assert moved.tensors["fc"].sequence and not moved.tensors["ro"].sequence
    x = rng.standard_normal((4, 7, H))
    # mean and affine commute: the same output, to rounding
    np.testing.assert_allclose(FloatExecutor(moved).run(x), FloatExecutor(g).run(x), rtol=1e-12, atol=1e-12)
    assert [l.name for l in g.layers] == ["in", "ro", "fc", "out"]  # the input graph is left alone


def test_verify_checks_the_quantized_network_too():
    # --verify compares every pass with the frontend's graph; after quantize
    # that is the bit-exact simulator's decoded output (it used to stop at
    # the quantized graph, which the float executor cannot run).
    import s4dc
    net = s4dc.compile("examples/digits/model.onnx", calibration="examples/digits/calibration.npz",
                       verify_numerics=True, place=False)
    dev = {r["pass"]: r["changes"]["rel_deviation_from_frontend"] for r in net.manifest["passes"][1:]}
    assert list(dev)[-1] == "quantize"
    assert max(v for k, v in dev.items() if k != "quantize") < 1e-4  # float passes: exact to fit error
    assert 1e-4 < dev["quantize"] < 0.05  # integers: the quantization error, bounded
