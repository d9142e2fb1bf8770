"""Issue 14, item 3: bad input to `s4dc run`, `s4dc report` and `s4dc.load`:
one-line errors, exit status 2, nothing written, the folder left as it was."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import s4dc
from s4dc import errors
from s4dc.cli import main
from conftest import SCAN

MODEL = SCAN / "scan_dense.onnx"  # quantized: (batch, 48, 3) -> (batch, 48, 2)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "net"
    s4dc.compile(MODEL, place=False).save(out)
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _last_err(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


# --- run inputs ---------------------------------------------------------------------------------
def _pickled(path: Path) -> None:
    np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)


RUN_INPUTS: list[tuple[str, Callable[[Path], None], str]] = [
    ("rank", lambda p: np.save(p, np.zeros((48, 3), np.float32)),
     "input has shape (48, 3); the network takes (batch, time, 3)"),
    ("features", lambda p: np.save(p, np.zeros((2, 48, 7), np.float32)),
     "input has shape (2, 48, 7); the network takes (batch, time, 3)"),
    ("dtype", lambda p: np.save(p, np.zeros((2, 48, 3), np.int32)), "input must be float32, got dtype int32"),
    ("nan", lambda p: np.save(p, np.full((2, 48, 3), np.nan, np.float32)),
     "input holds 288 NaN or Inf value(s), the first at index (0, 0, 0)"),
    ("empty", lambda p: np.save(p, np.zeros((0, 48, 3), np.float32)),
     "input has shape (0, 48, 3): no batch or no time steps"),
    ("empty-time", lambda p: np.save(p, np.zeros((1, 0, 3), np.float32)),
     "input has shape (1, 0, 3): no batch or no time steps"),
    ("pickled", _pickled, "{p}: cannot read a .npy array (Object arrays cannot be loaded when allow_pickle=False)"),
    ("npz", lambda p: p.write_bytes(Path(MODEL.with_suffix(".npz")).read_bytes()),
     "{p}: an .npz archive, not a .npy array"),
    ("truncated", lambda p: p.write_bytes(b"\x93NUMPY\x01\x00"), "{p}: cannot read a .npy array ("),
    ("missing", lambda p: None, "{p}: cannot read a .npy array ("),
]


@pytest.mark.parametrize("name,make,msg", RUN_INPUTS, ids=[c[0] for c in RUN_INPUTS])
def test_run_refuses_bad_input(base, tmp_path, capsys, name, make, msg):
    x = tmp_path / "x.npy"
    make(x)
    before = _snapshot(base)
    assert main(["run", str(base), str(x), "-o", str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    expected = "s4dc: error: " + msg.format(p=x)
    assert err.strip() == expected if not expected.endswith("(") else err.startswith(expected)
    assert not (tmp_path / "y.npy").exists() and _snapshot(base) == before


def test_run_output_paths(base, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 48, 3), np.float32))
    (tmp_path / "folder").mkdir()
    assert main(["run", str(base), str(x), "-o", str(tmp_path / "folder")]) == 2
    assert _last_err(capsys) == f"s4dc: error: {tmp_path / 'folder'}: is a folder; -o takes the .npy file to write"
    assert main(["run", str(base), str(x), "-o", str(tmp_path / "no" / "y.npy")]) == 2
    assert _last_err(capsys) == f"s4dc: error: {tmp_path / 'no' / 'y.npy'}: the folder {tmp_path / 'no'} does not exist"
    assert main(["run", str(base), str(x), "-o", str(x)]) == 2
    assert _last_err(capsys) == f"s4dc: error: {x}: is the input file; write the output elsewhere"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "x.npy"] and not any((tmp_path / "folder").iterdir())


def test_longer_and_shorter_time_run(base):
    """A recurrent network streams any time length (no kernel to outrun)."""
    net = s4dc.load(base)
    for T in (1, 48, 200):
        assert net.run(np.zeros((1, T, 3), np.float32)).shape[:2] == (1, T)
    assert net.warnings == []


# --- corrupted OUT/ folders ---------------------------------------------------------------------
def _edit_json(name: str, edit: Callable[[object], object]) -> Callable[[Path], None]:
    def go(d: Path) -> None:
        p = d / name
        p.write_text(json.dumps(edit(json.loads(p.read_text()))))
    return go


def _drop_param(d: Path) -> None:
    with np.load(d / "params.npz") as z:
        arrays = {k: z[k] for k in z.files}
    del arrays["Add_16/bias_mant"]
    np.savez(d / "params.npz", **arrays)


def _truncate(name: str) -> Callable[[Path], None]:
    def go(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
    return go


FOLDERS: list[tuple[str, Callable[[Path], None], str]] = [
    ("no-manifest", lambda d: (d / "manifest.json").unlink(),
     "{d}: not an s4dc network (manifest.json: No such file or directory)"),
    ("manifest-list", _edit_json("manifest.json", lambda m: [m]),
     "{d}/manifest.json: not an s4dc manifest (a JSON list, expected an object)"),
    ("format-version", _edit_json("manifest.json", lambda m: {**m, "format_version": 2}),
     "{d}/manifest.json: format 's4dc-net' version 2; this s4dc reads s4dc-net version 1"),
    ("no-io", _edit_json("manifest.json", lambda m: {k: v for k, v in m.items() if k != "io"}),
     "{d}/manifest.json: no 'io' section with 'input' and 'outputs'"),
    ("manifest-truncated", _truncate("manifest.json"), "{d}: not an s4dc network (manifest.json: "),
    ("params-entry", _drop_param,
     "{d}: graph.json and params.npz disagree (Add_16/bias_mant is not a file in the archive)"),
    ("params-truncated", _truncate("params.npz"), "{d}: cannot read the saved IR (File is not a zip file)"),
    ("no-layers", _edit_json("graph.json", lambda g: {**g, "layers": []}),
     "{d}/graph.json: not a valid network (graph 'scan_dense': needs exactly one input layer, has 0)"),
    ("graph-truncated", _truncate("graph.json"), "{d}: cannot read the saved IR (Expecting"),
    ("no-graph", lambda d: (d / "graph.json").unlink(), "{d}: cannot read the saved IR ([Errno 2] No such file"),
    ("graph-list", _edit_json("graph.json", lambda g: [g]), "{d}: graph.json or params.npz is malformed ("),
    ("features", _edit_json("manifest.json", lambda m: {**m, "io": {**m["io"], "input": {"features": 5}}}),
     "{d}/manifest.json: input features 5 disagree with graph.json's 3"),
]


@pytest.mark.parametrize("name,corrupt,msg", FOLDERS, ids=[c[0] for c in FOLDERS])
def test_corrupted_folder_is_refused_by_load_run_and_report(base, tmp_path, capsys, name, corrupt, msg):
    d = tmp_path / "net"
    shutil.copytree(base, d)
    corrupt(d)
    before = _snapshot(d)
    expected = msg.format(d=d)
    with pytest.raises(errors.NetworkFormatError) as info:
        s4dc.load(d)
    assert str(info.value) == expected if not expected.endswith(("(", ": ", "Expecting", "No such file")) \
        else str(info.value).startswith(expected)
    np.save(tmp_path / "x.npy", np.zeros((1, 48, 3), np.float32))
    for argv in (["run", str(d), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")], ["report", str(d)],
                 ["report", str(d), "--json"]):
        assert main(argv) == 2, argv
        cap = capsys.readouterr()
        assert cap.err.strip() == f"s4dc: error: {info.value}" and cap.out == ""
    assert _snapshot(d) == before and not (tmp_path / "y.npy").exists()


def test_report_accepts_what_load_accepts(base, tmp_path, capsys):
    d = tmp_path / "net"
    shutil.copytree(base, d)
    assert main(["report", str(d)]) == 0
    assert "scan_dense" in capsys.readouterr().out


def test_load_refuses_a_file_and_a_missing_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(errors.NetworkFormatError, match=r": not a folder$"):
        s4dc.load(tmp_path / "f")
    with pytest.raises(errors.NetworkFormatError, match=r": no such folder$"):
        s4dc.load(tmp_path / "nothing")


def test_pickle_is_never_loaded(base, tmp_path):
    """params.npz with a pickled entry: refused, not executed."""
    d = tmp_path / "net"
    shutil.copytree(base, d)
    with np.load(d / "params.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["Add_16/bias_mant"] = np.array([{"code": "anything"}], dtype=object)
    np.savez(d / "params.npz", **arrays)
    with pytest.raises(errors.NetworkFormatError):
        s4dc.load(d)


def test_step_refuses_what_run_refuses(base):
    net = s4dc.load(base)
    net.reset()
    assert net.step(np.zeros((2, 3), np.float32)).shape[0] == 2
    for x, msg in [(np.full((1, 3), np.nan, np.float32), "input holds 3 NaN or Inf value(s), the first at index (0, 0, 0)"),
                   (np.zeros((1, 4), np.float32), "input has shape (1, 1, 4); the network takes (batch, time, 3)"),
                   (np.zeros((1, 1, 3), np.float32), "token has shape (1, 1, 3); step takes (batch, features)")]:
        with pytest.raises(errors.InputDataError) as info:
            net.step(x)
        assert str(info.value) == msg
