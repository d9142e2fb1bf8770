"""Semantics of the continuous mimo op: its discrete-time equivalent, per
mode (the `ssm` counterpart is s4dc.ir.ssm). Part of the IR because the
float executor runs continuous layers by discretizing them on the fly."""
from __future__ import annotations

import numpy as np

from s4dc.errors import UnstableSystemError
from s4dc.ir.layer import Layer


def discrete_mimo(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """(Lambda_bar (P,), B_bar (P, H_in)) of a continuous diagonal mimo layer."""
    p = layer.params
    if layer.attrs["form"] != "diagonal":
        raise UnstableSystemError(f"{layer.where()}: a continuous dense state matrix must be "
                                  "diagonalized before it is discretized")
    lam_c, dt = p["A"], p["dt"]
    dtA = dt * lam_c
    if layer.attrs["discretization"] == "zoh":
        lam = np.exp(dtA)
        safe = np.where(lam_c == 0, 1.0, lam_c)
        gain = np.where(lam_c == 0, dt + 0j, (lam - 1.0) / safe)
    else:  # bilinear
        lam = (1.0 + dtA / 2.0) / (1.0 - dtA / 2.0)
        gain = dt / (1.0 - dtA / 2.0)
    return lam, gain[:, None] * p["B"]
