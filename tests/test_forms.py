"""Every accepted ONNX form, compiled and run, against onnxruntime.

Bound from the spine issue: max abs error <= 1e-4 x the output's max abs
value, at batch 1 and batch > 1, on random inputs."""
from __future__ import annotations

import numpy as np
import pytest

import s4dc
from s4dc.frontend.canonical import CanonicalModel
from conftest import SCAN, TORCH, ort_run, rel_err

TORCH_FORMS = [
    "ns4d_last_dynamo", "ns4d_last_dynamo_op21", "ns4d_last_dynamo_noopt", "ns4d_last_torchscript",
    "ns4d_last_torchscript_op13", "ns4d_mean_dynamo", "ns4d_mean_torchscript", "seq2seq_residual_dynamo",
    "seq2seq_residual_torchscript", "fullrange_dt_dynamo", "fullrange_dt_torchscript",
]
SCAN_FORMS = ["scan_dense", "scan_dense_matmul", "scan_diag_complex", "scan_diag_complex_op21", "scan_two_layers"]
BOUND = 1e-4


def _check(path, rng):
    net = s4dc.compile(path, float_only=True)
    x_shape = np.load(str(path).replace(".onnx", ".npz"))["x"].shape
    for batch in (1, 5):
        x = rng.standard_normal((batch,) + x_shape[1:]).astype(np.float32)
        assert rel_err(net.run(x), ort_run(path, x)) <= BOUND
    return net


@pytest.mark.parametrize("name", TORCH_FORMS)
def test_convolution_form_matches_onnxruntime(name, rng):
    net = _check(TORCH / f"{name}.onnx", rng)
    realized = [r["changes"]["realized"] for r in net.manifest["passes"] if r["pass"] == "realize"][0]
    assert realized and all(v["max_rel_error"] <= 1e-5 and v["max_abs_pole"] < 1 for v in realized.values())
    assert not any(l.op == "conv" for l in net.graph.layers)


@pytest.mark.parametrize("name", SCAN_FORMS)
def test_scan_form_matches_onnxruntime(name, rng):
    net = _check(SCAN / f"{name}.onnx", rng)
    assert all(l.attrs["form"] == "diagonal" and l.attrs["folded"] for l in net.graph.by_op("ssm"))


def _canonical(rng, opset, disc, readout, features=2, H=6, N=8, T=40):
    def layer():
        dt = np.exp(rng.uniform(np.log(1e-2), np.log(1e-1), H))
        A = -0.5 + 1j * np.pi * np.arange(N)[None].repeat(H, 0)
        C = rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N))
        return dt, A, np.ones((H, N)), C, rng.standard_normal(H)

    m = CanonicalModel(features=features, time=T, opset=opset)
    m.linear(rng.standard_normal((H, features)), rng.standard_normal(H)).s4d(*layer(), discretization=disc).relu()
    m.linear(rng.standard_normal((H, H)), rng.standard_normal(H)).s4d(*layer(), discretization=disc).relu()
    if readout:
        m.readout(readout)
    m.linear(rng.standard_normal((3, H)))
    return m.to_onnx()


@pytest.mark.parametrize("opset,disc,readout", [(13, "zoh", "last"), (17, "zoh", "mean"),
                                                (18, "bilinear", "mean"), (21, "zoh", None)])
def test_canonical_form_matches_onnxruntime(opset, disc, readout, rng, tmp_path):
    proto = _canonical(rng, opset, disc, readout)
    path = tmp_path / "canonical.onnx"
    path.write_bytes(proto.SerializeToString())
    net = s4dc.compile(path, float_only=True)
    for batch in (1, 4):
        x = rng.standard_normal((batch, 40, 2)).astype(np.float32)
        assert rel_err(net.run(x), ort_run(path, x)) <= BOUND
    ssm = list(net.graph.by_op("ssm"))
    assert len(ssm) == 2 and all(l.attrs["time"] == "discrete" and l.params["A"].shape == (6, 8) for l in ssm)


def test_scan_output_reading_old_state_is_converted(rng):
    """scan_dense_matmul's body computes y from the state before the update."""
    net = _check(SCAN / "scan_dense_matmul.onnx", rng)
    assert net.graph.tensors[net.graph.output_layers[0].output].sequence is False


def test_recovered_modes_match_true_s4d_parameters():
    """The realization of a conv-form layer recovers the true S4D eigenvalues."""
    net = s4dc.compile(TORCH / "ns4d_last_dynamo.onnx", float_only=True)
    p = np.load(TORCH / "ns4d_last_params.npz")
    ssm = list(net.graph.by_op("ssm"))[0]
    true_lam = np.exp(np.exp(p["layer0_log_dt"])[:, None] * (p["layer0_A_re"] + 1j * p["layer0_A_im"]))
    got = ssm.params["A"]
    for h in range(true_lam.shape[0]):
        g = got[h][np.abs(ssm.params["C"][h]) > 1e-8]
        # every true mode is found (conjugates fold to Im >= 0)
        d = np.abs(true_lam[h][:, None] - g[None]).min(axis=1)
        assert d.max() < 1e-3
