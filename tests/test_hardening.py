"""Issue 14, item 0: the silent and destructive cases. A time length beyond a
convolution kernel is said (or refused with strict), an edited canonical
function body is refused, -o never deletes what s4dc did not write, huge
tensors are refused before allocation, bad run data is refused, saturation
is flagged, and Ctrl-C leaves one line and nothing behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import s4dc
from s4dc import errors
from s4dc.cli import main
from conftest import SCAN, TORCH

CONV = TORCH / "ns4d_last_torchscript.onnx"  # two conv-form S4D layers, 64 taps, T = 64
DYN = TORCH / "dyn_time_torchscript.onnx"  # the same with a dynamic time axis
BEYOND = ("time length 100 exceeds the convolution kernel of layer(s) 's4d.0_Conv' (64 taps), 's4d.1_Conv' "
          "(64 taps); beyond 64 steps the compiled network follows the realized state space, not the ONNX model's truncated "
          "kernel, so outputs differ from onnxruntime's")


def _last_err(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- time length beyond a convolution kernel ---------------------------------------------------
@pytest.fixture(scope="module")
def conv_net() -> s4dc.Network:
    return s4dc.compile(CONV, float_only=True)


def test_manifest_records_kernel_lengths(conv_net):
    assert conv_net.manifest["kernel_lengths"] == {"s4d.0_Conv": 64, "s4d.1_Conv": 64}


def test_run_beyond_the_kernel_warns_and_flags(conv_net):
    x = np.random.default_rng(0).standard_normal((2, 100, 1)).astype(np.float32)
    with pytest.warns(errors.KernelLengthWarning) as rec:
        conv_net.run(x)
    assert [str(w.message) for w in rec] == [f"run: {BEYOND}"] == conv_net.warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conv_net.run(x[:, :64])  # within the kernel: no warning
    assert conv_net.warnings == []
    with pytest.raises(errors.KernelLengthError) as info:
        conv_net.run(x, strict=True)
    assert str(info.value) == f"run: {BEYOND} (strict)"


def test_compile_beyond_the_kernel_warns_or_refuses_with_strict(tmp_path, capsys):
    with pytest.warns(errors.KernelLengthWarning, match=r"dyn_time_torchscript.onnx: time length 100 exceeds"):
        s4dc.compile(DYN, seq_len=100, float_only=True)
    with pytest.raises(errors.KernelLengthError) as info:
        s4dc.compile(DYN, seq_len=100, float_only=True, strict=True)
    assert str(info.value) == f"dyn_time_torchscript.onnx: {BEYOND} (strict)"
    out = tmp_path / "net"
    assert main([str(DYN), "-o", str(out), "--seq-len", "100", "--float", "-q"]) == 0
    assert capsys.readouterr().err.strip() == f"s4dc: warning: dyn_time_torchscript.onnx: {BEYOND}"
    assert main([str(DYN), "-o", str(tmp_path / "strict"), "--seq-len", "100", "--float", "--strict"]) == 2
    assert _last_err(capsys) == f"s4dc: error: dyn_time_torchscript.onnx: {BEYOND} (strict)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]


def test_cli_run_beyond_the_kernel(conv_net, tmp_path, capsys):
    conv_net.save(tmp_path / "net")
    np.save(tmp_path / "x.npy", np.ones((1, 100, 1), np.float32))
    assert main(["run", str(tmp_path / "net"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-q"]) == 0
    assert capsys.readouterr().err.strip() == f"s4dc: warning: run: {BEYOND}"
    assert np.load(tmp_path / "y.npy").shape == (1, 10)
    (tmp_path / "y.npy").unlink()
    assert main(["run", str(tmp_path / "net"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--strict"]) == 2
    assert _last_err(capsys) == f"s4dc: error: run: {BEYOND} (strict)"
    assert not (tmp_path / "y.npy").exists()


# --- canonical function bodies -----------------------------------------------------------------
def _canonical() -> onnx.ModelProto:
    from fuzzing.cases import canonical_model
    return canonical_model("S4D")


def test_edited_function_body_is_refused(tmp_path, capsys):
    model = _canonical()
    s4dc.compile(model, float_only=True)  # the body as written: accepted
    body = model.functions[0]
    node = next(n for n in body.node if n.op_type == "Cos")
    node.op_type = "Sin"  # onnxruntime would run this; s4dc would compile the real S4D
    with pytest.raises(errors.FunctionBodyError) as info:
        s4dc.compile(model, float_only=True)
    msg = str(info.value)
    assert msg.startswith("node 's4d_2' (S4D): the body of function s4dc.S4D does not compute the op (relative "
                          "deviation ") and msg.endswith("on probe inputs); onnxruntime would run the body, s4dc "
                                                         "compiles the op: refusing rather than compiling something "
                                                         "different")
    path = tmp_path / "edited.onnx"
    onnx.save(model, path)
    assert main([str(path), "-o", str(tmp_path / "net"), "-q"]) == 2
    assert _last_err(capsys) == f"s4dc: error: {msg}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.onnx"]


def test_missing_function_is_refused():
    model = _canonical()
    del model.functions[:]
    with pytest.raises(errors.FunctionBodyError, match=r"^node 's4d_2' \(S4D\): the model defines no function "
                                                       r"s4dc.S4D, so onnxruntime cannot run it"):
        s4dc.compile(model, float_only=True)


# --- -o: nothing of the user's is deleted -------------------------------------------------------
MODEL = SCAN / "scan_dense.onnx"


def _user_folder(tmp_path: Path) -> Path:
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("my notes")
    (d / "sub").mkdir()
    (d / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return d


def test_out_refuses_a_foreign_folder(tmp_path, capsys):
    d = _user_folder(tmp_path)
    before = _snapshot(d)
    assert main([str(MODEL), "-o", str(d), "-q"]) == 2
    assert _last_err(capsys) == (f"s4dc: error: {d}: exists and is not an s4dc output folder (no s4dc "
                                 "manifest.json); pass --force (force=True) to add the network's files to it, "
                                 "nothing else is touched")
    assert _snapshot(d) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary leftovers
    with pytest.raises(errors.OutputError):
        s4dc.compile(MODEL, float_only=True).save(d)
    assert _snapshot(d) == before


def test_out_is_the_models_own_folder(tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(MODEL.read_bytes())
    assert main([str(model), "-o", str(tmp_path), "-q"]) == 2
    assert "is not an s4dc output folder" in _last_err(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert main([str(model), "-o", str(tmp_path), "-q", "--force", "--no-place"]) == 0
    assert model.read_bytes() == MODEL.read_bytes()
    assert s4dc.load(tmp_path).manifest["source"]["file"] == "model.onnx"


def test_force_adds_files_and_keeps_the_users(tmp_path):
    d = _user_folder(tmp_path)
    before = _snapshot(d)
    assert main([str(MODEL), "-o", str(d), "-q", "--force"]) == 0
    after = _snapshot(d)
    assert {k: after[k] for k in before} == before
    assert {"manifest.json", "graph.json", "params.npz", "placement.json", "report.html"} <= set(after)
    # Now an s4dc folder with the user's files in it: a recompile needs no
    # --force, replaces s4dc's files (placement.json is gone with --no-place)
    # and keeps the rest.
    assert main([str(SCAN / "scan_two_layers.onnx"), "-o", str(d), "-q", "--no-place"]) == 0
    again = _snapshot(d)
    assert {k: again[k] for k in before} == before and "placement.json" not in again
    assert s4dc.load(d).manifest["source"]["file"] == "scan_two_layers.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_force_never_replaces_a_users_file_of_our_name(tmp_path, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "report.html").write_text("<p>my report</p>")
    assert main([str(MODEL), "-o", str(d), "-q", "--force"]) == 2
    assert _last_err(capsys) == (f"s4dc: error: {d}: holds a report.html that s4dc did not write; s4dc will not "
                                 "replace it, even with --force")
    assert (d / "report.html").read_text() == "<p>my report</p>" and len(list(d.iterdir())) == 1


def test_recompile_replaces_an_s4dc_folder(tmp_path):
    out = tmp_path / "net"
    assert main([str(MODEL), "-o", str(out), "-q"]) == 0
    assert main([str(SCAN / "scan_two_layers.onnx"), "-o", str(out), "-q", "--no-place"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["graph.json", "manifest.json", "params.npz", "report.html",
                                                     "timings.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net"]


def test_out_refuses_a_file_and_force_replaces_it(tmp_path, capsys):
    f = tmp_path / "out"
    f.write_text("precious")
    assert main([str(MODEL), "-o", str(f), "-q"]) == 2
    assert _last_err(capsys) == f"s4dc: error: {f}: is a file, not a folder; pass --force (force=True) to replace it"
    assert f.read_text() == "precious"
    assert main([str(MODEL), "-o", str(f), "-q", "--force"]) == 0
    assert f.is_dir() and s4dc.load(f)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no stray .out.old-<pid>


def test_out_dot_and_bad_parents(tmp_path, capsys, monkeypatch):
    d = _user_folder(tmp_path)
    monkeypatch.chdir(d)
    before = _snapshot(d)
    assert main([str(MODEL), "-o", ".", "-q"]) == 2
    assert _last_err(capsys) == ("s4dc: error: .: exists and is not an s4dc output folder (no s4dc manifest.json); "
                                 "pass --force (force=True) to add the network's files to it, nothing else is touched")
    assert _snapshot(d) == before
    assert main([str(MODEL), "-o", "notes.txt/net", "-q"]) == 2
    assert _last_err(capsys) == "s4dc: error: notes.txt/net: the parent notes.txt is not a folder"
    assert _snapshot(d) == before


# --- size limits before allocation ---------------------------------------------------------------
def test_huge_constant_shape_is_refused_before_allocating(tmp_path):
    """A 10 kB model whose Constant 2147483647 feeds a ConstantOfShape made onnx's
    shape inference allocate > 7.5 GB; here it must fail under a 2 GiB address
    space limit with SizeLimitError, in a fresh process."""
    m = onnx.load(CONV)
    const = next(n for n in m.graph.node if n.op_type == "Constant" and
                 any(r.op_type == "ConstantOfShape" and n.output[0] in r.input for r in m.graph.node))
    const.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([2147483647], np.int64)))
    path = tmp_path / "huge.onnx"
    onnx.save(m, path)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from s4dc.cli import main; sys.exit(main([sys.argv[1], '-o', sys.argv[2], '-q']))")
    r = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "net")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (f"s4dc: error: {path}: node '/s4d.0/ConstantOfShape' (ConstantOfShape) makes a "
                                "tensor of shape [2147483647] (2147483647 elements), more than s4dc's limit of "
                                "33554432")
    assert not (tmp_path / "net").exists()


def test_initializer_data_must_match_its_type():
    m = onnx.load(CONV)
    init = next(i for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.raw_data)
    init.data_type = onnx.TensorProto.FLOAT16  # declared 2-byte floats, 4-byte floats stored
    with pytest.raises(errors.ModelLoadError) as info:
        s4dc.compile(m.SerializeToString())
    n = int(np.prod(init.dims))
    assert str(info.value) == (f"<bytes>: initializer '{init.name}': {4 * n} bytes of data for {n} values of "
                               f"FLOAT16 (shape {list(init.dims)})")


# --- run-time data ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qnet() -> s4dc.Network:
    return s4dc.compile(MODEL, place=False)  # quantized, (batch, 48, 3)


@pytest.mark.parametrize("x,msg", [
    (np.full((1, 48, 3), np.nan, np.float32), "input holds 144 NaN or Inf value(s), the first at index (0, 0, 0)"),
    (np.pad(np.zeros((1, 47, 3), np.float32), ((0, 0), (1, 0), (0, 0)), constant_values=np.inf),
     "input holds 3 NaN or Inf value(s), the first at index (0, 0, 0)"),
    (np.zeros((0, 48, 3), np.float32), "input has shape (0, 48, 3): no batch or no time steps"),
    (np.zeros((2, 0, 3), np.float32), "input has shape (2, 0, 3): no batch or no time steps"),
], ids=["nan", "inf", "no-batch", "no-time"])
def test_run_refuses_nan_inf_empty(qnet, x, msg, tmp_path, capsys):
    with pytest.raises(errors.InputDataError) as info:
        qnet.run(x)
    assert str(info.value) == msg
    qnet.save(tmp_path / "net")
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(tmp_path / "net"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 2
    assert _last_err(capsys) == f"s4dc: error: {msg}"
    assert not (tmp_path / "y.npy").exists()


def test_saturation_warns_flags_and_fails_with_strict(qnet, tmp_path, capsys):
    x = 1e4 * np.random.default_rng(0).standard_normal((2, 48, 3)).astype(np.float32)
    with pytest.warns(errors.SaturationWarning) as rec:
        qnet.run(x)
    msg = str(rec[0].message)
    assert msg.startswith("run: saturation in ") and "'input' 100.0%" in msg and qnet.warnings == [msg]
    qnet.run(x[:, :, :] * 0)
    assert qnet.warnings == []  # the flag is per run
    with pytest.raises(errors.SaturationError, match=r"^run: saturation in .* \(strict\)$"):
        qnet.run(x, strict=True)
    qnet.save(tmp_path / "net")
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(tmp_path / "net"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-q"]) == 0
    assert capsys.readouterr().err.strip() == f"s4dc: warning: {msg}"
    (tmp_path / "y.npy").unlink()
    assert main(["run", str(tmp_path / "net"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--strict"]) == 2
    assert not (tmp_path / "y.npy").exists()


# --- Ctrl-C ------------------------------------------------------------------------------------------
def test_ctrl_c_is_one_line_and_leaves_nothing(tmp_path):
    exe = Path(sys.executable).with_name("s4dc")
    out = tmp_path / "net"
    # SIGINT back to its default in the child: a suite run in the background
    # (nohup, `make test &`) inherits SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored, so the interrupt would never arrive
    p = subprocess.Popen([str(exe), "examples/digits/model.onnx", "-o", str(out)], stderr=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1],
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in p.stderr:  # interrupt once the passes run (kernel fitting, in worker processes)
        lines.append(line)
        if line.startswith("running passes"):
            os.kill(p.pid, signal.SIGINT)
            break
    rest = p.stderr.read()
    p.wait(timeout=60)
    assert p.returncode == 130, rest
    assert rest.strip() == "s4dc: interrupted; nothing was written"
    assert list(tmp_path.iterdir()) == []
