"""Diagonalize: dense per-channel state matrices to complex diagonal form.

A = V diag(lambda) V^-1, so B' = V^-1 B and C' = C V. Refused (with the
condition number) when V is too ill-conditioned: the diagonal system would
then amplify rounding, and fixed point on Loihi 2 would make it worse.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from s4dc.errors import IllConditionedError
from s4dc.ir.graph import Graph
from s4dc.passes.base import PassContext, register
from s4dc.ir.ops import MIMO, SSM
from s4dc.passes import mimo_modes
from s4dc.passes.discretize import check_stable


@register("diagonalize")
def apply(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    cond_max = float(ctx.options.cond_max)
    g = graph.copy()
    done: dict[str, float] = {}
    for l in g.layers:
        if l.is_(MIMO) and l.attrs["form"] == "dense":
            done[l.name] = float(f"{mimo_modes.diagonalize(l, cond_max):.4g}")
            continue
        if not l.is_(SSM) or l.attrs["form"] != "dense":
            continue
        A, B, C = l.params["A"], l.params["B"], l.params["C"]
        lam, V = np.linalg.eig(A)
        if l.attrs["time"] == "discrete":
            check_stable(l, lam)
        elif np.any(lam.real >= 0):
            raise IllConditionedError(f"{l.where()}: continuous state matrix is not stable")
        cond = np.linalg.cond(V) if A.shape[1] else np.zeros(A.shape[0])
        cond = np.where(np.isfinite(cond), cond, np.inf)
        if cond.size and cond.max() > cond_max:
            h = int(np.argmax(cond))
            raise IllConditionedError(
                f"{l.where()}: channel {h}: eigenvector matrix has condition number {cond[h]:.3g} "
                f"> {cond_max:.3g}; A is (nearly) defective and cannot be diagonalized reliably")
        Bd = np.linalg.solve(V, B.astype(complex)[..., None])[..., 0]
        Cd = np.einsum("hn,hnm->hm", C.astype(complex), V)
        l.params.update(A=lam.astype(complex), B=Bd, C=Cd)
        l.attrs["form"] = "diagonal"
        l.attrs["folded"] = False
        done[l.name] = float(f"{cond.max():.4g}") if cond.size else 1.0
    return g, ({"eigenvector_condition": done} if done else {})
