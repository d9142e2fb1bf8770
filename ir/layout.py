"""Axis layouts: how a model's outputs are arranged.

Inside s4dc a sequence is (batch, time, features) and a vector is (batch,
features). An ONNX model may emit another arrangement (say (batch, features,
time), or with singleton axes); the output layer's `layout` names each axis
with 'B', 'T', 'F' or '1' so results come out exactly as the model's."""
from __future__ import annotations

import numpy as np


def arrange(a: np.ndarray, layout: list[str], sequence: bool) -> np.ndarray:
    """Turn an internal (B, T, F) or (B, F) array into `layout`."""
    have = ["B", "T", "F"] if sequence else ["B", "F"]
    order = [x for x in layout if x != "1"]
    a = np.transpose(a, [have.index(x) for x in order])
    for i, x in enumerate(layout):
        if x == "1":
            a = np.expand_dims(a, i)
    return a
