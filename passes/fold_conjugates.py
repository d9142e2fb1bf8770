"""Fold conjugate pairs: N complex modes of a real system -> about N/2.

A real system's complex eigenvalues come in conjugate pairs whose outputs are
conjugates too, so C x + conj(C x) = 2 Re(C x): keep the mode with Im > 0 and
double the output, as Lava's S4D processes do. A real mode is kept with half
its C. Channels with fewer folded modes are padded with silent modes
(lambda = 0, B = C = 0).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from s4dc.errors import IRVerificationError
from s4dc.ir.graph import Graph
from s4dc.passes.base import PassContext, register
from s4dc.ir.ops import MIMO, SSM
from s4dc.passes import mimo_modes


def _fold_channel(lam, b, c, where: str, h: int):
    up, real, down = lam.imag > 0, lam.imag == 0, lam.imag < 0
    if up.sum() != down.sum():
        raise IRVerificationError(f"{where}: channel {h}: eigenvalues do not come in conjugate pairs")
    # The lower half must mirror the upper half (modes, B and C), else the
    # output is not real and folding would change it.
    lu, ld = lam[up], lam[down]
    pair = [int(np.argmin(np.abs(ld - np.conj(x)))) for x in lu]
    if len(set(pair)) != len(pair) or (lu.size and (
            np.max(np.abs(ld[pair] - np.conj(lu))) > 1e-9 * max(1.0, np.abs(lu).max())
            or not np.allclose((c[down] * b[down])[pair], np.conj(c[up] * b[up]), rtol=1e-7, atol=1e-12))):
        raise IRVerificationError(f"{where}: channel {h}: modes are not conjugate-symmetric; cannot fold")
    lam_f = np.concatenate([lam[up], lam[real]])
    b_f = np.concatenate([b[up], b[real]])
    c_f = np.concatenate([c[up], c[real] / 2.0])
    return lam_f, b_f, c_f


@register("fold_conjugates", requires=("diagonal",))
def apply(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    g = graph.copy()
    done: dict[str, list[int]] = {}
    for l in g.layers:
        if l.is_(MIMO) and l.attrs["form"] == "diagonal" and not l.attrs.get("folded"):
            sizes = mimo_modes.fold(l)
            if sizes is not None:
                done[l.name] = list(sizes)
            continue
        if not l.is_(SSM) or l.attrs["form"] != "diagonal" or l.attrs.get("folded"):
            continue
        A, B, C = l.params["A"], l.params["B"], l.params["C"]
        parts = [_fold_channel(A[h], B[h], C[h], l.where(), h) for h in range(A.shape[0])]
        n = max((p[0].size for p in parts), default=0)
        out = [np.zeros((A.shape[0], n), complex) for _ in range(3)]
        for h, p in enumerate(parts):
            for k in range(3):
                out[k][h, :p[k].size] = p[k]
        l.params.update(A=out[0], B=out[1], C=out[2])
        l.attrs["folded"] = True
        done[l.name] = [A.shape[1], n]
    return g, ({"folded": {k: f"{a} -> {b} modes" for k, (a, b) in done.items()}} if done else {})
