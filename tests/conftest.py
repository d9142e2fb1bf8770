"""Shared test helpers: fixture paths and the onnxruntime reference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TORCH = FIXTURES / "torch"
SCAN = FIXTURES / "scan"


def ort_run(model, x: np.ndarray) -> np.ndarray:
    data = model if isinstance(model, bytes) else (
        model.SerializeToString() if hasattr(model, "SerializeToString") else Path(model).read_bytes())
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return float(np.abs(got.astype(np.float64) - ref).max() / np.abs(ref).max())


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
