"""Discretize: continuous-time diagonal state spaces to discrete time.

ZOH by default, bilinear where the source model says so. Works per mode, so
it runs after `diagonalize` (a continuous dense A is diagonalized first).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from s4dc.errors import UnstableSystemError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.ssm import discrete_ssm
from s4dc.passes.base import PassContext, register
from s4dc.ir.ops import MIMO, SSM


def check_stable(layer: Layer, lam: np.ndarray, what: str = "eigenvalue") -> None:
    """Raise unless every discrete eigenvalue is strictly inside the unit circle."""
    mag = np.abs(lam)
    if mag.size and mag.max() >= 1.0:
        h, n = np.unravel_index(int(np.argmax(mag)), mag.shape)[:2]
        raise UnstableSystemError(
            f"{layer.where()}: channel {h} has a state {what} with |lambda| = {mag.max():.6g} >= 1; "
            "Loihi 2 streams the recurrence without end, so the state matrix must be stable")


@register("discretize")
def apply(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    g = graph.copy()
    done = []
    for l in g.layers:
        if l.is_(MIMO) and l.attrs["time"] == "continuous":
            from s4dc.passes import mimo_modes

            mimo_modes.discretize(l)
            done.append(l.name)
            continue
        if not l.is_(SSM) or l.attrs["time"] != "continuous":
            continue
        if np.any(l.params["A"].real >= 0):
            h = int(np.argwhere(l.params["A"].real >= 0)[0][0])
            raise UnstableSystemError(f"{l.where()}: channel {h} has a continuous eigenvalue with "
                                      "real part >= 0; the state matrix must be stable")
        lam, bbar = discrete_ssm(l)
        check_stable(l, lam)
        l.params["A"], l.params["B"] = lam, bbar
        del l.params["dt"]
        l.attrs = {k: v for k, v in l.attrs.items() if k != "discretization"}
        l.attrs["time"] = "discrete"
        done.append(l.name)
    return g, ({"discretized": done} if done else {})
