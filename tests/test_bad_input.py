"""Each bad input: the right S4dcError subclass, one line naming the node or
layer, exit status 2 from the CLI, and nothing written."""
from __future__ import annotations

import pytest

from s4dc import errors
from s4dc.cli import main
from conftest import SCAN, TORCH

CASES = [
    (SCAN / "bad_truncated.onnx", errors.ModelLoadError, "not an ONNX model"),
    (SCAN / "bad_not_onnx.onnx", errors.ModelLoadError, "not an ONNX model"),
    (TORCH / "bad_lstm.onnx", errors.UnsupportedOpError, "node '/lstm/LSTM' (LSTM): recurrent cells"),
    (TORCH / "bad_layernorm.onnx", errors.UnsupportedOpError, "(LayerNormalization): normalization"),
    (TORCH / "bad_gelu.onnx", errors.UnsupportedOpError, "(Erf): Loihi 2 S4D needs ReLU"),
    (TORCH / "bad_glu.onnx", errors.UnsupportedOpError, "Loihi 2 S4D needs ReLU"),
    (SCAN / "bad_unstable.onnx", errors.UnstableSystemError, "channel 2 has a state eigenvalue with |lambda| = 1.02"),
    (SCAN / "bad_illconditioned.onnx", errors.IllConditionedError, "channel 1: eigenvector matrix has condition number 1.17e+12"),
    (SCAN / "bad_nonlinear.onnx", errors.UnsupportedPatternError, "not linear in (state, input)"),
    # White noise needs about one mode per two taps; a 16-mode budget cannot fit it.
    (TORCH / "bad_noise_kernel_dynamo.onnx", errors.KernelFitError, "no stable realization with at most 16 modes"),
    (TORCH / "bad_nan_torchscript.onnx", errors.InvalidWeightsError, "holds NaN or Inf"),
    (SCAN / "bad_nan.onnx", errors.InvalidWeightsError, "initializer 'L0_C'"),
    (TORCH / "dyn_time_torchscript.onnx", errors.DynamicShapeError, "dynamic time length ('time', axis 1); pass --seq-len"),
]


@pytest.mark.parametrize("path,cls,text", CASES, ids=[c[0].stem for c in CASES])
def test_bad_input_is_refused_cleanly(path, cls, text, tmp_path, capsys):
    import s4dc

    budget = {"max_modes": 16} if "noise" in path.name else {}
    with pytest.raises(cls) as info:
        s4dc.compile(path, **budget)
    msg = str(info.value)
    assert text in msg and "\n" not in msg
    out = tmp_path / "net"
    assert main([str(path), "-o", str(out)] + (["--max-modes", "16"] if budget else [])) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after any progress lines
    assert last.startswith("s4dc: error: ") and text in last
    assert list(tmp_path.iterdir()) == []  # no OUT/, no temporary leftovers


def test_unsupported_op_lists_supported_ops():
    import s4dc

    with pytest.raises(errors.UnsupportedOpError, match="supported ops: Add, BatchNormalization, .*Relu"):
        s4dc.compile(TORCH / "bad_layernorm.onnx")


def test_dynamic_time_compiles_with_seq_len(tmp_path):
    import numpy as np
    import s4dc
    from conftest import ort_run, rel_err

    net = s4dc.compile(TORCH / "dyn_time_torchscript.onnx", seq_len=64, float_only=True)
    x = np.random.default_rng(0).standard_normal((2, 64, 1)).astype(np.float32)
    assert rel_err(net.run(x), ort_run(TORCH / "dyn_time_torchscript.onnx", x)) <= 1e-4
    with pytest.raises(errors.DynamicShapeError, match="fixes the time length to 64; --seq-len 32 disagrees"):
        s4dc.compile(TORCH / "ns4d_last_dynamo.onnx", seq_len=32)


def test_failed_compile_keeps_existing_out_untouched(tmp_path):
    out = tmp_path / "net"
    assert main([str(SCAN / "scan_dense.onnx"), "-o", str(out), "-q"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([str(SCAN / "bad_unstable.onnx"), "-o", str(out), "-q"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]


def test_bad_run_input(tmp_path):
    import numpy as np

    out = tmp_path / "net"
    assert main([str(SCAN / "scan_dense.onnx"), "-o", str(out), "-q"]) == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 48, 7), np.float32))
    assert main(["run", str(out), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 2
    np.save(tmp_path / "xi.npy", np.zeros((2, 48, 3), np.int32))
    assert main(["run", str(out), str(tmp_path / "xi.npy"), "-o", str(tmp_path / "y.npy")]) == 2
    assert not (tmp_path / "y.npy").exists()
    assert main(["run", str(tmp_path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 2


def test_network_too_big_for_the_hardware(tmp_path, capsys):
    import json

    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps({"cores_per_chip": 2, "mesh": [1, 2]}))
    out = tmp_path / "net"
    assert main([str(SCAN / "scan_two_layers.onnx"), "-o", str(out), "--hardware", str(hw)]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert "s4dc: error: cores: the network needs" in last and "the system has 2" in last
    assert not out.exists()


def test_impossible_hardware_file_names_the_field(tmp_path, capsys):
    import json

    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps({"cores_per_chip": 128, "mesh": [8, 8]}))
    assert main([str(SCAN / "scan_dense.onnx"), "-o", str(tmp_path / "net"), "--hardware", str(hw)]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert "field 'mesh'" in last and not (tmp_path / "net").exists()
