"""Discretize: continuous-time diagonal state spaces to discrete time.

ZOH by default, bilinear where the source model says so. Works per mode, so
it runs after `diagonalize` (a continuous dense A is diagonalized first).
An `ssm` layer's modes are its channels' states; a `mimo` layer's are the
P modes of its one shared state (s4dc.ir.mimo).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from s4dc.errors import UnstableSystemError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.mimo import discrete_mimo
from s4dc.ir.ssm import discrete_ssm
from s4dc.passes.base import PassContext, register
from s4dc.ir.ops import MIMO, SSM


def check_stable(layer: Layer, lam: np.ndarray, what: str = "eigenvalue") -> None:
    """Raise unless every discrete eigenvalue is strictly inside the unit circle."""
    mag = np.abs(lam)
    if mag.size and mag.max() >= 1.0:
        at = int(np.unravel_index(int(np.argmax(mag)), mag.shape)[0])
        who = f"mode {at} of the shared state has" if layer.is_(MIMO) else f"channel {at} has a state {what} with"
        raise UnstableSystemError(
            f"{layer.where()}: {who} |lambda| = {mag.max():.6g} >= 1; "
            "Loihi 2 streams the recurrence without end, so the state matrix must be stable")


def check_stable_continuous(layer: Layer, A: np.ndarray) -> None:
    """Raise unless every continuous eigenvalue has a negative real part."""
    if np.any(A.real >= 0):
        first = tuple(np.argwhere(A.real >= 0)[0])  # a mode of a mimo, (channel, mode) of an ssm
        who = f"mode {first[0]}" if layer.is_(MIMO) else f"channel {first[0]}"
        raise UnstableSystemError(f"{layer.where()}: {who} has a continuous eigenvalue {complex(A[first]):.4g} "
                                  "with real part >= 0; the state matrix must be stable")


@register("discretize")
def apply(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    g = graph.copy()
    done = []
    for l in g.layers:
        if not (l.is_(SSM) or l.is_(MIMO)) or l.attrs["time"] != "continuous":
            continue
        check_stable_continuous(l, l.params["A"])
        lam, bbar = (discrete_mimo if l.is_(MIMO) else discrete_ssm)(l)
        check_stable(l, lam)
        l.params["A"], l.params["B"] = lam, bbar
        del l.params["dt"]
        l.attrs = {k: v for k, v in l.attrs.items() if k != "discretization"}
        l.attrs["time"] = "discrete"
        done.append(l.name)
    return g, ({"discretized": done} if done else {})
