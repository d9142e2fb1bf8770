"""The conv form of a MIMO state space: a full (not depthwise) causal Conv
over time, realized as a stable MIMO diagonal SSM by block-Hankel system
identification (passes/kernel_fit/block_hankel.py).

The frontend's Conv handler (compiler/frontend/handlers.py, not this
module's) still refuses non-depthwise kernels; until it emits `mconv`, these
tests build the layer it would emit from the real fixture file's weights
(tests/fixtures/mimo/conv_mimo.onnx) and compare with onnxruntime."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from s4dc.errors import KernelFitError
from s4dc.ir import Graph, Layer, Tensor, verify
from s4dc.passes import PASSES
from s4dc.targets.fixed_sim import FixedSimulator
from s4dc.targets.float_exec import FloatExecutor
from conftest import FIXTURES, ort_run

PATH = FIXTURES / "mimo" / "conv_mimo.onnx"


def conv_graph(kernel: np.ndarray, bias: np.ndarray) -> Graph:
    """input -> mconv -> output: the layer a full causal Conv lowers to."""
    h_out, h_in, _ = kernel.shape
    g = Graph("conv")
    g.add(Layer("in", "input", [], "in", {"features": h_in}), Tensor("in", h_in))
    g.add(Layer("mimo_conv", "mconv", ["in"], "mimo_conv", {}, {"kernel": kernel, "bias": bias}),
          Tensor("mimo_conv", h_out))
    g.add(Layer("out", "output", ["mimo_conv"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", h_out))
    return verify(g)


def fixture_graph() -> Graph:
    m = onnx.load(PATH)
    w = {i.name: onnx.numpy_helper.to_array(i).astype(np.float64) for i in m.graph.initializer}
    return conv_graph(np.ascontiguousarray(w["W"][:, :, ::-1]), w["bc"])  # Conv correlates: flip to impulse order


@pytest.mark.parametrize("batch", [1, 3])
def test_full_conv_and_its_realization_match_onnxruntime(batch):
    x = np.load(FIXTURES / "mimo" / "conv_mimo.npz")["x"][:batch]
    ref = ort_run(PATH, x)
    g = fixture_graph()
    assert np.abs(FloatExecutor(g).run(x) - ref).max() <= 1e-4 * np.abs(ref).max()
    r, changes = PASSES["realize"](g, SimpleNamespace(fit_tol=1e-6, max_modes=16))
    l = verify(r).layer("mimo_conv")
    assert (l.op, l.attrs["folded"]) == ("mimo", True)
    rep = changes["realized"]["mimo_conv"]
    assert rep["modes"] == 5 and rep["max_rel_error"] <= 1e-6 and rep["max_abs_pole"] < 1
    assert np.all(np.abs(l.params["A"]) < 1)
    assert np.abs(FloatExecutor(r).run(x) - ref).max() <= 1e-4 * np.abs(ref).max()


def test_realization_streams_past_the_kernel_as_the_true_system():
    """Beyond the 48 taps the realized layer follows the system the kernel
    came from (the ONNX Conv truncates), and stays bounded."""
    p = np.load(FIXTURES / "mimo" / "conv_mimo_params.npz")
    g = fixture_graph()
    r, _ = PASSES["realize"](g, SimpleNamespace(fit_tol=1e-6, max_modes=16))
    x = np.random.default_rng(2).standard_normal((2, 4 * 48, 3))
    y = FloatExecutor(r).trace(x)["mimo_conv"]
    s, want = np.zeros((2, 5), complex), []
    for t in range(x.shape[1]):
        s = p["lam"] * s + x[:, t] @ p["B"].T
        want.append(2 * (s @ p["C"].T).real + x[:, t] @ p["D"].T)
    want = np.stack(want, 1) + np.linspace(-0.1, 0.1, 4)
    assert np.abs(y - want).max() <= 1e-4 * np.abs(want).max()


def test_realized_conv_quantizes_and_simulates():
    g, _ = PASSES["realize"](fixture_graph(), SimpleNamespace(fit_tol=1e-6, max_modes=16))
    x = np.random.default_rng(3).standard_normal((16, 48, 3))
    q, _ = PASSES["quantize"](g, SimpleNamespace(calibration_x=x))
    ref = FloatExecutor(g).run(x[:4])
    y = FixedSimulator(verify(q)).run(x[:4])
    assert np.sqrt(np.mean((y - ref) ** 2)) <= 0.05 * np.sqrt(np.mean(ref**2))


def test_quantize_refuses_an_unrealized_full_conv():
    from s4dc.passes.base import PassPreconditionError

    with pytest.raises(PassPreconditionError, match="needs a mimo_realized graph: layer 'mimo_conv'"):
        PASSES["quantize"](fixture_graph(), SimpleNamespace(calibration_x=np.zeros((1, 4, 3))))


def test_white_noise_kernel_is_refused_with_its_error():
    k = np.random.default_rng(4).standard_normal((2, 2, 40))
    with pytest.raises(KernelFitError) as info:
        PASSES["realize"](conv_graph(k, np.zeros(2)), SimpleNamespace(fit_tol=1e-5, max_modes=4))
    msg = str(info.value)
    assert "no stable MIMO realization with at most 4 modes fits the 2x2 kernel to tolerance 1e-05" in msg
    assert "relative error 0." in msg and "mimo_conv" in msg and "\n" not in msg
