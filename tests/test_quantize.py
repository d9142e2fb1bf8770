"""Quantize pass: stable rounding of A, error bounds, per-layer precision,
bad calibration and config input, and PTQ accuracy on the digits example."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import s4dc
from s4dc import errors
from s4dc.cli import main
from s4dc.passes.quantize import quantize_modes
from conftest import SCAN, ort_run

DIGITS = Path(__file__).parents[1] / "examples" / "digits"


def impulse_err(lam, q):
    l = np.arange(20000)
    return np.sum(np.abs(lam ** l - q ** l) ** 2)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_quantized_modes_stay_inside_the_unit_circle(bits):
    rng = np.random.default_rng(bits)
    r = np.concatenate([1 - 10.0 ** rng.uniform(-7, -1, 400), rng.uniform(0, 1, 100)])
    lam = r * np.exp(1j * rng.uniform(-np.pi, np.pi, r.size))
    qr, qi = quantize_modes(lam, bits)
    q = (qr + 1j * qi) / 2.0 ** (bits - 1)
    assert np.all(np.abs(q) < 1)
    assert np.all(np.abs(q - lam) <= 2 * 2.0 ** -(bits - 1) * np.sqrt(2))


def test_mode_rounding_beats_coefficientwise_rounding():
    rng = np.random.default_rng(0)
    lam = (1 - 10.0 ** rng.uniform(-4, -2, 50)) * np.exp(1j * rng.uniform(0.01, 0.5, 50))
    bits = 12
    s = 2.0 ** (bits - 1)
    qr, qi = quantize_modes(lam, bits)
    q = (qr + 1j * qi) / s
    naive = (np.round(lam.real * s) + 1j * np.round(lam.imag * s)) / s
    for a, b, c in zip(lam, q, naive):
        if abs(c) < 1:
            assert impulse_err(a, b) <= impulse_err(a, c) * (1 + 1e-9)


def test_simulator_agrees_with_float_within_reported_error():
    net = s4dc.compile(SCAN / "scan_two_layers.onnx")
    rep = next(r["changes"] for r in net.manifest["passes"] if r["pass"] == "quantize")
    assert net.quantized
    fnet = s4dc.compile(SCAN / "scan_two_layers.onnx", float_only=True)
    x = np.random.default_rng(11).standard_normal((64, 32, 3)).astype(np.float32)
    err = np.sqrt(np.mean((net.run(x) - fnet.run(x)) ** 2)) / np.sqrt(np.mean(fnet.run(x) ** 2))
    assert err <= 3 * rep["output_rel_rms_error"] + 1e-6
    assert rep["output_rel_rms_error"] < 0.05
    for entry in rep["layers"].values():
        assert entry["saturations"] == 0
        if entry["op"] == "qssm":
            assert entry["max_abs_eigenvalue"] < 1


def test_digits_ptq_accuracy_drop_at_most_half_a_point():
    data = np.load(DIGITS / "test.npz")
    x, y = data["x"], data["y"]
    net = s4dc.compile(DIGITS / "model.onnx", calibration=str(DIGITS / "calibration.npz"))
    acc_q = np.mean(net.run(x).argmax(1) == y)
    acc_f = np.mean(ort_run(DIGITS / "model.onnx", x).argmax(1) == y)
    assert acc_f >= 0.95
    assert acc_f - acc_q <= 0.005
    assert sum(net.saturations.values()) == 0


def test_per_layer_precision_config(tmp_path):
    fnet = s4dc.compile(SCAN / "scan_dense.onnx", float_only=True)
    layer = next(l.name for l in fnet.graph.layers if l.op == "ssm")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"Model:\n  weight: 6\nLayerName:\n  {layer}:\n    a: 12\n    weight: 4\n")
    net = s4dc.compile(SCAN / "scan_dense.onnx", config=str(cfg))
    bits = {l.name: l.attrs["bits"] for l in net.graph.layers if "bits" in l.attrs}
    assert bits[layer]["a"] == 12 and bits[layer]["weight"] == 4
    assert all(b["weight"] == 6 for n, b in bits.items() if n != layer)
    assert np.abs(net.graph.layer(layer).params["d"]).max() <= 8


@pytest.mark.parametrize("setup,cls,text", [
    (lambda d: np.savez(d / "c.npz", x=np.zeros((4, 48, 5), np.float32)), errors.CalibrationError,
     "has shape (4, 48, 5), the model takes (n, time, 3)"),
    (lambda d: np.savez(d / "c.npz", x=np.zeros((4, 48, 3), np.int32)), errors.CalibrationError, "must be float32"),
    (lambda d: np.savez(d / "c.npz", y=np.zeros((4, 48, 3), np.float32)), errors.CalibrationError, "cannot read"),
    (lambda d: (d / "p.json").write_text(json.dumps({"LayerName": {"nope": {"weight": 4}}})), errors.ConfigError,
     "LayerName 'nope' is not a layer of this network"),
    (lambda d: (d / "p.json").write_text(json.dumps({"Model": {"weight": 9}})), errors.BitWidthError,
     "weight bits = 9; Loihi 2 holds 2 to 8"),
    (lambda d: (d / "p.json").write_text(json.dumps({"Model": {"a": 20}})), errors.BitWidthError,
     "a bits = 20; Loihi 2 holds 4 to 16"),
    (lambda d: (d / "p.json").write_text("{not json"), errors.ConfigError, "not valid JSON"),
])
def test_bad_calibration_or_config(setup, cls, text, tmp_path, capsys):
    work = tmp_path / "in"
    work.mkdir()
    setup(work)
    opt = {"calibration": str(work / "c.npz")} if (work / "c.npz").exists() else {"config": str(work / "p.json")}
    with pytest.raises(cls, match=None) as info:
        s4dc.compile(SCAN / "scan_dense.onnx", **opt)
    assert text in str(info.value)
    flag = ["--calibration", opt["calibration"]] if "calibration" in opt else ["--config", opt["config"]]
    assert main([str(SCAN / "scan_dense.onnx"), "-o", str(tmp_path / "net"), "-q"] + flag) == 2
    assert not (tmp_path / "net").exists()


def test_calibration_from_a_npy_file_is_the_array(rng, tmp_path):
    """A .npy holds the array itself (np.load gives no 'x' to index: it
    raised a raw IndexError); the same integers as the .npz."""
    x = rng.standard_normal((8, 48, 3)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    np.savez(tmp_path / "c.npz", x=x)
    a, b = (s4dc.compile(SCAN / "scan_dense.onnx", calibration=str(tmp_path / f)) for f in ("c.npy", "c.npz"))
    for la, lb in zip(a.graph.layers, b.graph.layers):
        assert la.params.keys() == lb.params.keys()
        assert all(np.array_equal(la.params[k], lb.params[k]) for k in la.params)


def test_recurrent_network_calibrates_at_any_length(rng):
    # Every layer is recurrent or pointwise in time: a calibration set as long
    # as the stream it will run sees that stream's peaks.
    x_run = rng.standard_normal((8, 4 * 48, 3)).astype(np.float32)
    float_net = s4dc.compile(SCAN / "scan_dense.onnx", float_only=True)
    ref = float_net.run(x_run)
    long_net = s4dc.compile(SCAN / "scan_dense.onnx", calibration=rng.standard_normal((16, 4 * 48, 3)))
    y = long_net.run(x_run)
    rel = float(np.sqrt(np.mean((y - ref) ** 2) / np.mean(ref ** 2)))
    assert rel < 0.05, rel
    assert long_net.manifest["calibration"].startswith("16 sequences from the given array")


def test_kernel_fixes_the_calibration_length(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 128, 1), np.float32))
    with pytest.raises(errors.CalibrationError) as e:
        s4dc.compile(Path(__file__).parents[1] / "examples" / "digits" / "model.onnx",
                     calibration=str(tmp_path / "c.npz"))
    assert str(e.value).endswith("'x' has shape (2, 128, 1), the model takes (n, 64, 1) (the convolution "
                                 "kernel of node_Conv_40 fixes the time length)")


def _tiny_path_model(kind: str, rng) -> "object":
    from s4dc.frontend.canonical import CanonicalModel

    H, N, T = 3, 4, 40
    m = CanonicalModel(features=H, time=T)
    cz = lambda *s: rng.standard_normal(s) + 1j * rng.standard_normal(s)  # noqa: E731
    if kind.startswith("s4d"):
        A = -0.5 + 1j * np.pi * np.arange(N)[None].repeat(H, 0)
        C = cz(H, N) * (1e-13 if kind == "s4d tiny C" else 1.0)
        D = rng.standard_normal(H) * (1e-13 if kind == "s4d tiny D" else 1.0)
        m.s4d(np.full(H, 0.05), A, np.ones((H, N), complex), C, D)
    else:
        P = 4
        lam = 0.9 * np.exp(1j * rng.uniform(0, 3, P))
        B = cz(P, H) * (1e-30 if kind == "mimo tiny input, no D" else 1.0)
        C = cz(2, P) * (1e-13 if kind == "mimo tiny C" else 1.0)
        D = np.zeros((2, H)) if kind == "mimo tiny input, no D" else \
            rng.standard_normal((2, H)) * (1e-13 if kind == "mimo tiny D" else 1.0)
        m.mimo(lam, B, C, D)
    return m.to_onnx()


@pytest.mark.parametrize("kind", ["s4d tiny D", "s4d tiny C", "mimo tiny D", "mimo tiny C", "mimo tiny input, no D"])
def test_paths_below_the_output_resolution_quantize(kind):
    """A synapse path 1e-13 of the output (or one of zero weights) needs a
    shift past what Loihi 2 holds; its weights are below the output's
    resolution (one output step at most), so they are zeroed and the shift
    kept in range, where the verifier refused the layer before."""
    rng = np.random.default_rng(0)
    onx = _tiny_path_model(kind, rng)
    x = rng.standard_normal((3, 40, 3)).astype(np.float32)
    yf = s4dc.compile(onx, float_only=True).run(x).astype(np.float64)
    yq = s4dc.compile(onx, place=False).run(x).astype(np.float64)
    assert np.sqrt(np.mean((yq - yf) ** 2)) <= 0.05 * np.sqrt(np.mean(yf ** 2))


def test_a_quantized_output_far_from_float_warns_or_refuses_when_strict(tmp_path):
    """An output that reads the old state of a fast mode (lambda 0.005):
    the IR's form reads the new one, C = C_old / lambda, and D cancels it
    at tap 0, which 8-bit weights cannot resolve. Exact in float; quantized
    the error is reported, not passed over: a warning, or with --strict an
    error and nothing written."""
    import re
    import sys
    import warnings

    from conftest import FIXTURES

    sys.path.insert(0, str(FIXTURES))
    from make_mimo_fixtures import scan_model

    A = np.diag([0.95, 0.7, 0.005])
    A[0, 1] = 0.1
    rng = np.random.default_rng(0)
    m = scan_model(A, rng.standard_normal((3, 2)), rng.standard_normal((2, 3)), np.zeros((2, 2)), np.eye(2, dtype=np.float32),
                   np.zeros(2, np.float32), reads_old=True, time_first=False)
    path = tmp_path / "old.onnx"
    path.write_bytes(m.SerializeToString())
    cal = rng.standard_normal((16, 40, 2)).astype(np.float32)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        net = s4dc.compile(path, calibration=cal, place=False)
    err = [p for p in net.manifest["passes"] if p["pass"] == "quantize"][0]["changes"]["output_rel_rms_error"]
    assert err > 0.10
    msgs = [str(w.message) for w in rec if issubclass(w.category, errors.QuantizationAccuracyWarning)]
    assert len(msgs) == 1 and re.fullmatch(
        r"old.onnx: the quantized output is \d+\.\d% RMS from float on the calibration inputs \(worst layer '\w+': "
        r"\d+\.\d%\), over 10%; widen that layer's widths \(--config\), or look for weights that cancel \(a "
        r"zero-delay D undoing its modes: an output that reads the old state of a fast mode\)", msgs[0]), msgs
    np.save(tmp_path / "cal.npy", cal)
    out = tmp_path / "net"
    assert main([str(path), "-o", str(out), "--calibration", str(tmp_path / "cal.npy"), "--strict", "-q"]) == 2
    assert not out.exists()
