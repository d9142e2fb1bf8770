"""A new op touches the files docs/architecture.md lists and no other: the
toy op `toy.Scale` (tests/plugins/toy_scale.py) registers one entry per
table at run time, then compiles from ONNX, runs in the float executor and
the bit-exact simulator, places, and runs in Lava with the same integers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import s4dc
from s4dc import plugins
from conftest import ort_run

PLUGIN = Path(__file__).parent / "plugins" / "toy_scale.py"
H_IN, H, T = 3, 4, 40


def toy_model(rng: np.random.Generator) -> onnx.ModelProto:
    """x (B, T, 3) -> MatMul -> toy.Scale -> Relu -> MatMul -> y (B, T, 2);
    toy.Scale is a model-local function (Mul), so onnxruntime runs it."""
    fn = helper.make_function("toy", "Scale", ["x", "s"], ["y"], [helper.make_node("Mul", ["x", "s"], ["y"])],
                              [helper.make_opsetid("", 18)])
    w1 = numpy_helper.from_array(rng.standard_normal((H_IN, H)).astype(np.float32), "w1")
    s = numpy_helper.from_array(np.array([0.5, -1.25, 2.0, 0.75], np.float32), "s")
    w2 = numpy_helper.from_array(rng.standard_normal((H, 2)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Scale", ["h", "s"], ["hs"], name="scale", domain="toy"),
             helper.make_node("Relu", ["hs"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    g = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", T, H_IN])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", T, 2])], [w1, s, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("toy", 1)],
                          functions=[fn], producer_name="test_toy_op")
    onnx.checker.check_model(m)
    return m


@pytest.fixture
def toy_plugin(monkeypatch):
    monkeypatch.setenv(plugins.ENV_VAR, str(PLUGIN))
    loaded = plugins.load()
    assert loaded == [str(PLUGIN)]
    import sys
    mod = sys.modules[f"s4dc_plugin_{PLUGIN.stem}"]
    yield mod
    mod.unregister()
    plugins._loaded.discard(str(PLUGIN))


def test_toy_op_compiles_simulates_and_runs_in_lava(toy_plugin, tmp_path, rng):
    model = toy_model(rng)
    x = rng.standard_normal((8, T, H_IN)).astype(np.float32)
    ref = ort_run(model, x)

    net_f = s4dc.compile(model.SerializeToString(), float_only=True)
    assert [l.op for l in net_f.graph.layers] == ["input", "affine", "scale", "relu", "affine", "output"]
    np.testing.assert_allclose(net_f.run(x), ref, rtol=1e-5, atol=1e-5)

    net = s4dc.compile(model.SerializeToString(), calibration=rng.standard_normal((32, T, H_IN)).astype(np.float32))
    q = {l.name: l for l in net.graph.layers}
    assert q["scale"].op == "qscale" and q["scale"].attrs["relu"] is True and "relu" not in q  # ReLU fused
    np.testing.assert_array_equal(q["scale"].params["weight"], [16, -40, 64, 24])  # s on the 8-bit grid: 2^-5 (peak 2)
    y = net.run(x)
    rel = float(np.sqrt(np.mean((y - ref) ** 2) / np.mean(ref**2)))
    assert rel < 0.05, rel
    doc = net.placement
    assert {p["layer"] for p in doc["partitions"]} == {"fc1", "scale", "fc2"}

    out = net.save(tmp_path / "toy")
    again = s4dc.load(out)  # the saved graph verifies: the op is registered here
    np.testing.assert_array_equal(again.run(x), y)

    from s4dc.targets.lava.runner import lava_available, run_lava
    if not lava_available():
        pytest.skip("no Lava environment (make .venv-lava)")
    y_lava, info = run_lava(out, x[:2], placement=out / "placement.json")
    np.testing.assert_array_equal(y_lava, y[:2])  # the Lava process registered the op through S4DC_PLUGINS
    assert info["latency_steps"] == 3  # fc1, scale and fc2: one synapse stage each


def test_without_the_plugin_the_function_is_inlined(rng):
    # No handler for toy.Scale: its body (Mul by a constant) is inlined and
    # lowered by the standard handlers, as an affine with diagonal weight.
    model = toy_model(rng)
    net = s4dc.compile(model.SerializeToString(), float_only=True)
    assert [l.op for l in net.graph.layers] == ["input", "affine", "relu", "affine", "output"]  # scale fused
    x = rng.standard_normal((2, T, H_IN)).astype(np.float32)
    np.testing.assert_allclose(net.run(x), ort_run(model, x), rtol=1e-5, atol=1e-5)
