"""Token-by-token execution: step() equals run(); realized convolutions stay
bounded when streamed far past the kernel length (Loihi never stops)."""
from __future__ import annotations

import numpy as np
import pytest

import s4dc
from conftest import SCAN, TORCH

CONV = ["ns4d_last_dynamo", "ns4d_mean_torchscript", "seq2seq_residual_dynamo", "fullrange_dt_dynamo",
        "fullrange_dt_torchscript"]


@pytest.mark.parametrize("path", [TORCH / "ns4d_mean_dynamo.onnx", TORCH / "seq2seq_residual_torchscript.onnx",
                                  SCAN / "scan_two_layers.onnx"])
def test_step_matches_run(path):
    net = s4dc.compile(path, float_only=True)
    T, F = net.manifest["io"]["input"]["time_steps"], net.manifest["io"]["input"]["features"]
    x = np.random.default_rng(0).standard_normal((2, T, F)).astype(np.float32)
    whole = net.run(x)
    net.reset()
    steps = [net.step(x[:, t]) for t in range(T)]
    if whole.ndim == 3:  # sequence output: step t gives row t
        np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, rtol=1e-5, atol=1e-6)
    else:  # readout: the last step's value is the whole sequence's
        np.testing.assert_allclose(steps[-1], whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CONV)
def test_streaming_4x_kernel_length_stays_bounded(name):
    net = s4dc.compile(TORCH / f"{name}.onnx", float_only=True)
    ssm = list(net.graph.by_op("ssm"))
    assert all(np.abs(l.params["A"]).max() < 1 for l in ssm)
    taps = [r["changes"]["realized"] for r in net.manifest["passes"] if r["pass"] == "realize"][0]
    L = max(v["kernel_taps"] for v in taps.values())
    # Impulse response of every realized layer over 4L steps: it must decay.
    for l in ssm:
        h = (l.params["C"][..., None] * l.params["A"][..., None] ** np.arange(4 * L)).sum(axis=1).real * 2
        assert np.isfinite(h).all()
        assert np.abs(h[:, 3 * L:]).max() <= np.abs(h[:, :L]).max()
    # And the whole network on a 4L-step input, constant and random.
    F = net.manifest["io"]["input"]["features"]
    rng = np.random.default_rng(0)
    for x in (np.ones((1, 4 * L, F), np.float32), rng.standard_normal((2, 4 * L, F)).astype(np.float32)):
        tr = net.trace(x)
        first = max(np.abs(v[:, :L]).max() for k, v in tr.items() if v.ndim == 3)
        late = max(np.abs(v[:, 3 * L:]).max() for k, v in tr.items() if v.ndim == 3)
        assert np.isfinite(late) and late <= 10 * first
