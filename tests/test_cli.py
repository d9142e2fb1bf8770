"""The command line and the library API end to end: compile, save, load, run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import s4dc
from s4dc.cli import main
from conftest import SCAN, TORCH, ort_run, rel_err


def test_cli_compile_and_run_match_onnxruntime(tmp_path):
    model = TORCH / "seq2seq_residual_torchscript.onnx"
    out = tmp_path / "net"
    assert main([str(model), "-o", str(out), "--float", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["graph.json", "manifest.json", "params.npz", "report.html",
                                                     "timings.json"]
    x = np.random.default_rng(3).standard_normal((4, 32, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(out), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-q"]) == 0
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.float32 and y.shape == (4, 32, 2)
    assert rel_err(y, ort_run(model, x)) <= 1e-4


def test_manifest_records_source_options_and_passes(tmp_path):
    model = TORCH / "ns4d_mean_dynamo.onnx"
    net = s4dc.compile(model, fit_tol=1e-6, float_only=True)
    net.save(tmp_path / "n")
    m = json.loads((tmp_path / "n" / "manifest.json").read_text())
    import hashlib
    assert m["format"] == "s4dc-net" and m["format_version"] == 1 and m["s4dc_version"] == s4dc.__version__
    assert m["source"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert m["options"]["fit_tol"] == 1e-6 and m["options"]["float_only"] is True and m["calibration"] is None
    assert [p["pass"] for p in m["passes"]] == m["flow"] == ["frontend", "canonicalize", "realize", "diagonalize",
                                                             "discretize", "fold_conjugates", "canonicalize"]
    assert m["io"]["outputs"] == [{"name": m["io"]["outputs"][0]["name"], "features": 10, "sequence": False,
                                   "layout": ["B", "F"]}]
    t = json.loads((tmp_path / "n" / "timings.json").read_text())
    assert len(t) == len(m["passes"]) and all(v >= 0 for v in t.values())


def test_compile_is_deterministic_byte_for_byte(tmp_path):
    for name in ("a", "b"):
        assert main([str(TORCH / "ns4d_last_torchscript.onnx"), "-o", str(tmp_path / name), "-q"]) == 0
    for f in ("graph.json", "manifest.json", "params.npz", "placement.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    doc = json.loads((tmp_path / "a" / "placement.json").read_text())
    placed = {(p["chip"], p["core"]) for p in doc["partitions"]}
    assert len(placed) == len(doc["partitions"])  # distinct cores
    objs = {k: v["objective"] for k, v in doc["placements"].items()}
    assert objs["optimized"] <= objs["greedy"] <= objs["naive"]
    assert s4dc.load(tmp_path / "a").placement == doc


def test_load_runs_like_the_compiled_network(tmp_path):
    net = s4dc.compile(SCAN / "scan_two_layers.onnx")
    net.save(tmp_path / "n")
    again = s4dc.load(tmp_path / "n")
    x = np.random.default_rng(5).standard_normal((3, 32, 3)).astype(np.float32)
    assert np.array_equal(net.run(x), again.run(x))


def test_console_script_exit_codes(tmp_path):
    exe = Path(sys.executable).with_name("s4dc")
    ok = subprocess.run([str(exe), str(SCAN / "scan_dense.onnx"), "-o", str(tmp_path / "n")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "compiled scan_dense.onnx" in ok.stdout and "fold_conjugates" in ok.stdout
    bad = subprocess.run([str(exe), str(SCAN / "bad_unstable.onnx"), "-o", str(tmp_path / "m")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines()[-1].startswith("s4dc: error: layer 'L0_Scan'")
    assert not (tmp_path / "m").exists()


def test_library_is_quiet(capsys):
    s4dc.compile(SCAN / "scan_dense.onnx")
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""


def test_long_runs_report_progress_and_match_one_call(tmp_path, capsys, monkeypatch):
    import s4dc.cli as cli

    out = tmp_path / "net"
    assert main([str(SCAN / "scan_dense.onnx"), "-o", str(out), "-q"]) == 0
    x = np.random.default_rng(2).standard_normal((10, 48, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setattr(cli, "RUN_CHUNK", 4)
    capsys.readouterr()
    assert main(["run", str(out), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]) == 0
    err = capsys.readouterr().err
    assert "simulated 4/10 sequences" in err and "simulated 10/10 sequences" in err
    assert np.array_equal(np.load(tmp_path / "y.npy"), s4dc.load(out).run(x))
    assert main(["run", str(out), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y2.npy"), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_debug_flag_and_missing_parent(tmp_path, capsys):
    """--debug changes nothing for a clean refusal (one line, exit 2); -o in a
    folder that does not exist yet creates it."""
    assert main([str(SCAN / "bad_unstable.onnx"), "-o", str(tmp_path / "n"), "--debug", "-q"]) == 2
    assert capsys.readouterr().err.strip().startswith("s4dc: error: layer 'L0_Scan'")
    out = tmp_path / "a" / "b" / "net"
    assert main([str(SCAN / "scan_dense.onnx"), "-o", str(out), "-q", "--no-place", "--debug"]) == 0
    assert s4dc.load(out).manifest["source"]["file"] == "scan_dense.onnx"
    assert sorted(p.name for p in out.parent.iterdir()) == ["net"]


def test_report_refuses_a_folder_run_refuses(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("[]")
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"s4dc: error: {tmp_path}/manifest.json: not an s4dc manifest "
                                               "(a JSON list, expected an object)")


def test_compile_summary_gives_a_mimo_layer_its_weight_width_for_b_and_c(tmp_path, capsys):
    """A MIMO layer's B and C are synapse weights: the compile summary's
    b and c columns are the weight width there (the S4D layer's stay its
    coefficient widths), as the quantize record says."""
    import onnx
    from test_report_mimo import _model

    model, cal = _model()
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=cal)
    (tmp_path / "w6.json").write_text(json.dumps({"Model": {"weight": 6}}))
    assert main([str(tmp_path / "m.onnx"), "-o", str(tmp_path / "net"), "--calibration",
                 str(tmp_path / "cal.npz"), "--no-place", "--config", str(tmp_path / "w6.json")]) == 0
    rows = {r.split()[0]: r.split() for r in capsys.readouterr().out.splitlines()
            if len(r.split()) == 6 and r.split()[1] in ("qmimo", "qssm")}
    quant = json.loads((tmp_path / "net" / "manifest.json").read_text())
    quant = next(p["changes"]["layers"] for p in quant["passes"] if p["pass"] == "quantize")
    for name in ("mimo_4", "mimo_6"):
        w, a, b, c = rows[name][2].split("/")
        assert (w, b, c) == ("6", "6", "6") and int(a) == quant[name]["bits"]["a"]
    s4d = next(n for n, r in rows.items() if r[1] == "qssm")
    bits = quant[s4d]["bits"]
    assert rows[s4d][2] == f"{bits['weight']}/{bits['a']}/{bits['b']}/{bits['c']}" and bits["b"] != 6
