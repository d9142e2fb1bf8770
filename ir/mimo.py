"""Semantics of the continuous mimo op: its discrete-time equivalent, per
mode (the `ssm` counterpart is s4dc.ir.ssm). Part of the IR because the
float executor runs continuous layers by discretizing them on the fly."""
from __future__ import annotations

import numpy as np

from s4dc.errors import UnstableSystemError
from s4dc.ir.layer import Layer
from s4dc.ir.ssm import discrete_ssm


def discrete_mimo(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """(Lambda_bar (P,), B_bar (P, H_in)) of a continuous diagonal mimo layer."""
    p = layer.params
    if layer.attrs["form"] != "diagonal":
        raise UnstableSystemError(f"{layer.where()}: a continuous dense state matrix must be "
                                  "diagonalized before it is discretized")
    # per mode, the S4D rule: P channels of one state each (one formula for both ops)
    one = Layer(layer.name, "ssm", layer.inputs, layer.output, layer.attrs,
                {"A": p["A"][:, None], "B": np.ones((p["A"].shape[0], 1), complex), "dt": p["dt"]})
    lam, gain = discrete_ssm(one)
    return lam[:, 0], gain[:, 0, None] * p["B"]
