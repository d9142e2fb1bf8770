"""Quantization-aware training's QuantizeLinear/DequantizeLinear grids are
honored: power-of-two weight grids give exactly the trained integers, and
activation grids fix the message exponents."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import s4dc
from conftest import ort_run


def qdq_model(rng) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    T, F, H = 20, 2, 5
    w1 = rng.integers(-127, 128, (F, H)).astype(np.int8)
    w2 = rng.integers(-127, 128, (H, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w1, "w1_q"), (w2, "w2_q"), (np.float32(2.0**-5), "s_w1"), (np.float32(2.0**-7), "s_w2"),
        (np.float32(2.0**-6), "s_x"), (np.float32(2.0**-4), "s_h"), (np.int8(0), "zp"),
        (np.zeros(H, np.float32), "b1")]]
    n = helper.make_node
    nodes = [
        n("QuantizeLinear", ["x", "s_x", "zp"], ["xq"]), n("DequantizeLinear", ["xq", "s_x", "zp"], ["xd"]),
        n("DequantizeLinear", ["w1_q", "s_w1", "zp"], ["w1"]), n("MatMul", ["xd", "w1"], ["h0"]),
        n("Add", ["h0", "b1"], ["h1"]), n("Relu", ["h1"], ["h2"]),
        n("QuantizeLinear", ["h2", "s_h", "zp"], ["hq"]), n("DequantizeLinear", ["hq", "s_h", "zp"], ["hd"]),
        n("DequantizeLinear", ["w2_q", "s_w2", "zp"], ["w2"]), n("MatMul", ["hd", "w2"], ["y"]),
    ]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", T, F])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", T, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m, w1, w2


def test_qdq_grids_are_honored(tmp_path):
    rng = np.random.default_rng(0)
    model, w1, w2 = qdq_model(rng)
    path = tmp_path / "qdq.onnx"
    path.write_bytes(model.SerializeToString())
    x = (0.5 * rng.standard_normal((16, 20, 2))).astype(np.float32)
    np.savez(tmp_path / "cal.npz", x=x)
    net = s4dc.compile(path, calibration=str(tmp_path / "cal.npz"))
    aff = [l for l in net.graph.layers if l.op == "qaffine"]
    assert len(aff) == 2
    assert np.array_equal(aff[0].params["weight"], w1.T.astype(np.int64)) and aff[0].attrs["weight_exp"] == -5
    assert np.array_equal(aff[1].params["weight"], w2.T.astype(np.int64)) and aff[1].attrs["weight_exp"] == -7
    assert net.graph.tensors[net.graph.input_layer.output].fmt.exp == -6
    assert net.graph.tensors[aff[0].output].fmt.exp == -4
    # On the trained grids the integers agree with the QDQ model up to its
    # round-half-even vs the chip's floor in the one requantization step.
    y, ref = net.run(x), ort_run(path, x)
    lsb_in = 2.0**-4 * np.abs(w2.astype(np.float64)).sum(0).max() * 2.0**-7
    assert np.abs(y - ref).max() <= lsb_in + 1e-6
