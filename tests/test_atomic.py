"""Atomic writes leave nothing on failure and give written files and OUT/
the umask's permissions (not the temporary file's 0600 / folder's 0700)."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

import s4dc
from s4dc.atomic import umask_mode, write_atomic
from s4dc.frontend.canonical import CanonicalModel


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_write_atomic_permissions_and_failure(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_atomic(tmp_path / "a" / "x.bin", lambda f: f.write(b"abc"))
        assert p.read_bytes() == b"abc" and _mode(p) == 0o644
        with pytest.raises(RuntimeError):
            write_atomic(tmp_path / "a" / "y.bin", lambda f: (f.write(b"half"), (_ for _ in ()).throw(RuntimeError("boom"))))
        assert sorted(q.name for q in (tmp_path / "a").iterdir()) == ["x.bin"]
        assert umask_mode(0o777) == 0o755
    finally:
        os.umask(old)


def test_saved_network_folder_is_readable_by_others(tmp_path):
    m = CanonicalModel(features=1, time=8)
    m.linear(np.ones((2, 1))).relu()
    old = os.umask(0o022)
    try:
        out = s4dc.compile(m.to_onnx(), float_only=True).save(tmp_path / "net")
        assert _mode(out) == 0o755
        assert {_mode(f) for f in out.iterdir()} == {0o644}
    finally:
        os.umask(old)
