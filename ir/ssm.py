"""Semantics of the continuous ssm op: its discrete-time equivalent.

Part of the IR (not of a pass) because executors need it too: a float
executor runs continuous layers by discretizing them on the fly.
"""
from __future__ import annotations

import numpy as np

from s4dc.errors import UnstableSystemError
from s4dc.ir.layer import Layer


def discrete_ssm(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """(A_bar, B_bar) of a continuous diagonal ssm layer."""
    p = layer.params
    if layer.attrs["form"] != "diagonal":
        raise UnstableSystemError(f"{layer.where()}: a continuous dense state matrix must be "
                                  "diagonalized before it is discretized")
    A, B, dt = p["A"], p["B"], p["dt"][:, None]
    dtA = dt * A
    if layer.attrs["discretization"] == "zoh":
        lam = np.exp(dtA)
        safe = np.where(A == 0, 1.0, A)
        gain = np.where(A == 0, dt + 0j, (lam - 1.0) / safe)
    else:  # bilinear
        lam = (1.0 + dtA / 2.0) / (1.0 - dtA / 2.0)
        gain = dt / (1.0 - dtA / 2.0)
    return lam, gain * B
