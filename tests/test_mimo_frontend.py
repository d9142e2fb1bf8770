"""The frontend's PyTorch-exported MIMO forms, against onnxruntime:
a full (group 1) causal Conv1d over time (the conv form of a MIMO system),
realized as a stable MIMO diagonal state space; a recurrence run by torch's
scan and exported with a static batch (measured at that batch); and
`s4dc.compile(bytes, base_dir=)` for a file whose weights torch wrote to
FILE.onnx.data. Fixtures: tests/fixtures/make_torch_mimo_fixtures.py."""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

import s4dc
from s4dc import errors
from s4dc.cli import main
from conftest import FIXTURES, ort_run

DIR = FIXTURES / "torch_mimo"
CONV = ["conv_mimo_leftpad_dynamo", "conv_mimo_leftpad_torchscript", "conv_mimo_slice_dynamo",
        "conv_mimo_slice_torchscript"]
SCAN = [("scan_s4d_b1_dynamo", "ssm"), ("scan_s4d_b4_dynamo", "ssm"), ("scan_mimo_b1_dynamo", "mimo"),
        ("scan_mimo_b4_dynamo", "mimo")]


def _x(name: str, batch: int | None = None) -> np.ndarray:
    x = np.load(DIR / f"{name}.npz")["x"]
    return x if batch is None else x[:batch]


def test_stored_outputs_are_onnxruntime_s():
    for name in CONV + [s for s, _ in SCAN]:
        d = np.load(DIR / f"{name}.npz")
        np.testing.assert_array_equal(ort_run(DIR / f"{name}.onnx", d["x"]), d["y"])


@pytest.mark.parametrize("name", CONV)
@pytest.mark.parametrize("batch", [1, 3])
def test_full_conv_is_a_stable_mimo_layer_matching_onnxruntime(name, batch):
    x = _x(name, batch)
    ref = ort_run(DIR / f"{name}.onnx", x)
    net = s4dc.compile(DIR / f"{name}.onnx", float_only=True)
    (l,) = [l for l in net.graph.layers if l.opdef.recurrent]
    (conv,) = [n.name for n in onnx.load(DIR / f"{name}.onnx").graph.node if n.op_type == "Conv"]
    assert (l.op, l.source) == ("mimo", conv)
    assert np.all(np.abs(l.params["A"]) < 1)
    # the fit is reported per layer: the 6 modes of the system the kernel came from, and its error
    rep = [r["changes"]["realized"] for r in net.manifest["passes"] if r["pass"] == "realize"][0][l.name]
    assert rep["modes"] == 6 and rep["kernel_taps"] == 32 and rep["max_rel_error"] <= 1e-7
    assert rep["max_abs_pole"] == pytest.approx(np.abs(l.params["A"]).max(), abs=1e-9)
    assert net.manifest["kernel_lengths"] == {l.name: 32}
    y = net.run(x)
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()


def test_full_conv_quantized_within_five_percent():
    name = "conv_mimo_leftpad_dynamo"
    rng = np.random.default_rng(0)
    cal = rng.standard_normal((64, 32, 3)).astype(np.float32)
    x = rng.standard_normal((16, 32, 3)).astype(np.float32)
    ref = ort_run(DIR / f"{name}.onnx", x)
    net = s4dc.compile(DIR / f"{name}.onnx", calibration=cal, place=False)
    assert [l.op for l in net.graph.layers if l.opdef.recurrent] == ["qmimo"]
    y = net.run(x)
    assert np.sqrt(np.mean((y - ref) ** 2)) <= 0.05 * np.sqrt(np.mean(ref ** 2))


def test_kernel_no_stable_realization_fits_is_refused(tmp_path):
    path = DIR / "bad_conv_mimo_noise_dynamo.onnx"
    with pytest.raises(errors.KernelFitError) as info:
        s4dc.compile(path, float_only=True, max_modes=4, fit_tol=1e-5)
    # one line naming the node, with the fit error it reached and its modes (at most 4)
    assert re.fullmatch(r"layer 'node_conv1d' \(mconv, from node_conv1d\): no stable MIMO realization with at "
                        r"most 4 modes fits the 4x3 kernel to tolerance 1e-05 \(relative error 0\.\d+ with [1-4] "
                        r"modes\); raise --max-modes or --fit-tol", str(info.value))
    out = tmp_path / "net"
    assert main([str(path), "-o", str(out), "--max-modes", "4", "--float"]) == 2
    assert not out.exists()


def test_right_padding_without_the_slice_is_refused():
    """Conv1d(padding=k-1) computes k-1 steps past the input: without the
    Slice back to T the output is not causal."""
    m = onnx.load(DIR / "conv_mimo_slice_dynamo.onnx")
    (sl,) = [n for n in m.graph.node if n.op_type == "Slice"]
    for n in m.graph.node:  # read the Conv's output where the Slice's was read
        n.input[:] = [sl.input[0] if i == sl.output[0] else i for i in n.input]
    m.graph.node.remove(sl)
    with pytest.raises(errors.UnsupportedPatternError) as info:
        s4dc.compile(m.SerializeToString(), float_only=True)
    assert str(info.value).startswith("node 'node_transpose_1' (Transpose)")
    assert str(info.value).endswith("reads a convolution's output padded by 31 steps on the right; only a Slice "
                                    "back to its first 32 steps may follow it")


@pytest.mark.parametrize("name,op", SCAN)
def test_scan_with_a_static_batch_is_measured(name, op):
    """torch writes the initial state as a (batch, ...) zeros initializer; the
    MIMO body also reshapes to shapes that carry the batch, so its probes run
    at that batch."""
    x = _x(name)
    assert x.shape[0] in (1, 4)  # the batch the file fixes
    ref = ort_run(DIR / f"{name}.onnx", x)
    net = s4dc.compile(DIR / f"{name}.onnx", float_only=True)
    assert [l.op for l in net.graph.layers if l.opdef.recurrent] == [op]
    assert np.abs(net.run(x) - ref).max() <= 1e-4 * np.abs(ref).max()


def test_static_batch_scan_state_counts():
    """The measured state is the per-sample one (16 states for 4 x 4, 6 for the
    MIMO), not the exported (batch, ...) initializer's size."""
    s4d = s4dc.compile(DIR / "scan_s4d_b4_dynamo.onnx", float_only=True)
    (l,) = s4d.graph.by_op("ssm")
    assert l.params["A"].shape == (4, 4)  # H channels x N diagonal states
    mimo = s4dc.compile(DIR / "scan_mimo_b1_dynamo.onnx", float_only=True)
    (m,) = mimo.graph.by_op("mimo")
    assert m.params["A"].shape == (3,) and m.params["B"].shape == (3, 3) and m.params["C"].shape == (5, 3)


def test_static_batch_scan_state_without_the_batch_is_refused():
    """A constant initial state must start with the batch the input fixes
    (onnxruntime cannot run the file either)."""
    m = onnx.load(DIR / "scan_s4d_b4_dynamo.onnx")
    (scan,) = [n for n in m.graph.node if n.op_type == "Scan"]
    (init,) = [i for i in m.graph.initializer if i.name == scan.input[0]]
    init.CopyFrom(onnx.numpy_helper.from_array(np.zeros((1, 4, 4), np.float32), init.name))
    body = scan.attribute[0].g  # without declared shapes, shape inference lets it through
    for vi in list(body.input) + list(body.output):
        vi.type.tensor_type.ClearField("shape")
    del body.value_info[:], m.graph.value_info[:]
    with pytest.raises(errors.UnsupportedPatternError) as info:
        s4dc.compile(m.SerializeToString(), float_only=True)
    assert str(info.value) == ("node 'node_scan__1' (Scan): initial state of shape (1, 4, 4) does not start with "
                               "the input's batch size 4; a Scan state is (batch, ...)")


def test_bytes_with_external_data_from_base_dir(tmp_path, monkeypatch):
    """A default torch.onnx.export(..., dynamo=True) file keeps its weights in
    FILE.onnx.data; as bytes, from another working folder, base_dir says
    where they are."""
    path = DIR / "conv_mimo_external_dynamo.onnx"
    assert (DIR / "conv_mimo_external_dynamo.onnx.data").exists()
    data = path.read_bytes()
    x = _x("conv_mimo_external_dynamo")
    ref = np.load(DIR / "conv_mimo_external_dynamo.npz")["y"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.ModelLoadError) as info:
        s4dc.compile(data, float_only=True)
    assert str(info.value) == ("<bytes>: tensor 'conv.weight' has its data in an external file "
                               "'conv_mimo_external_dynamo.onnx.data'; pass base_dir (the folder that holds it) "
                               "or the model's path")
    net = s4dc.compile(data, base_dir=DIR, float_only=True)
    assert np.abs(net.run(x) - ref).max() <= 1e-4 * np.abs(ref).max()
    assert net.manifest["source"]["sha256"] == s4dc.compile(path, float_only=True).manifest["source"]["sha256"]
    with pytest.raises(errors.ModelLoadError, match="cannot read external data 'conv_mimo_external_dynamo.onnx.data'"):
        s4dc.compile(data, base_dir=tmp_path, float_only=True)


def _scan(A, B, C, D, extra=None, reads_old=False):
    import sys

    sys.path.insert(0, str(FIXTURES))
    from make_mimo_fixtures import scan_model

    h_out = C.shape[0]
    return scan_model(np.asarray(A), np.asarray(B), np.asarray(C), np.asarray(D), np.eye(h_out, dtype=np.float32),
                      np.zeros(h_out, np.float32), reads_old=reads_old, time_first=False, body_extra=extra)


@pytest.mark.parametrize("reads_old", [False, True])
def test_small_couplings_in_a_differently_scaled_matrix_are_kept(reads_old, tmp_path):
    """B = 1000 I and a coupled C of 1e-3 entries: the split into channels
    judged C's entries against B's scale, dropped them, and compiled a
    per-channel layer 100% off. Each matrix is now judged on its own, and a
    split must reproduce the whole impulse response."""
    A = np.diag([0.9, 0.8])
    C = np.array([[1e-3, 2e-3], [3e-3, 1e-3]])
    path = tmp_path / "s.onnx"
    path.write_bytes(_scan(A, 1000 * np.eye(2), C, 0.5 * np.eye(2), reads_old=reads_old).SerializeToString())
    x = np.random.default_rng(0).standard_normal((3, 40, 2)).astype(np.float32)
    ref = ort_run(path, x)
    net = s4dc.compile(path, float_only=True)
    assert [l.op for l in net.graph.layers if l.opdef.recurrent] == ["mimo"]
    assert np.abs(net.run(x) - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("extra, message", [
    # large states, a small tanh output: judged against the states' scale, the output's nonlinearity hid
    ("tanh_out", r"the body is not linear in \(state, input\) \(deviation \d\.?\d*\)"),
    # sqrt of a negative probe input: NaN compared as "not above the tolerance"
    ("sqrt_u", r"the body gives NaN or Inf on a probe \(state, input\)"),
])
def test_scan_body_nonlinear_only_in_its_output_is_refused(extra, message, tmp_path):
    rng = np.random.default_rng(1)
    A, B, C = np.diag([0.9, 0.5]), 1e4 * rng.standard_normal((2, 3)), 1e-4 * rng.standard_normal((3, 2))
    path = tmp_path / "s.onnx"
    path.write_bytes(_scan(A, B, C, np.zeros((3, 3)), extra=extra).SerializeToString())
    with pytest.raises(errors.UnsupportedPatternError) as info:
        s4dc.compile(path, float_only=True)
    assert re.fullmatch(r"node 'mimo_scan' \(Scan\): " + message + "; s4dc maps linear state updates "
                        r"x' = A x \+ B u, y = C x \+ D u", str(info.value)), str(info.value)
    assert main([str(path), "-o", str(tmp_path / "net"), "--float"]) == 2 and not (tmp_path / "net").exists()


@pytest.mark.parametrize("reads_old", [False, True])
def test_singular_state_matrix(reads_old, tmp_path):
    """A = diag(0.9, 0): an output of the new state still maps (any C with
    C A = C_old gives the same output; it was refused as 'A is singular');
    one of the old state reads what A annihilates, a delay: refused."""
    rng = np.random.default_rng(0)
    path = tmp_path / "s.onnx"
    path.write_bytes(_scan(np.diag([0.9, 0.0]), rng.standard_normal((2, 2)), rng.standard_normal((3, 2)),
                           rng.standard_normal((3, 2)), reads_old=reads_old).SerializeToString())
    x = rng.standard_normal((2, 40, 2)).astype(np.float32)
    if reads_old:
        with pytest.raises(errors.UnsupportedPatternError) as info:
            s4dc.compile(path, float_only=True)
        assert str(info.value) == ("node 'mimo_scan' (Scan): the output reads the old state and A is singular "
                                   "(condition inf): the new state does not determine it")
        return
    ref = ort_run(path, x)
    y = s4dc.compile(path, float_only=True).run(x)
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()
