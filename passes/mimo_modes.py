"""The MIMO (`mimo`) counterparts of diagonalize and fold_conjugates: one
shared state of P modes, so each works on the whole layer instead of per
channel. The passes call these for their mimo layers (discretize treats
both ops alike: passes/discretize.py).
"""
from __future__ import annotations

import numpy as np

from s4dc.errors import IllConditionedError, UnstableSystemError
from s4dc.ir.layer import Layer
from s4dc.passes.discretize import check_stable


def diagonalize(l: Layer, cond_max: float) -> float:
    """A = V diag(lam) V^-1 in place (B' = V^-1 B, C' = C V); returns cond(V)."""
    A, B, C = l.params["A"], l.params["B"], l.params["C"]
    lam, V = np.linalg.eig(A) if A.size else (np.zeros(0, complex), np.zeros((0, 0)))
    if l.attrs["time"] == "discrete":
        check_stable(l, lam)
    elif np.any(lam.real >= 0):
        k = int(np.argmax(lam.real))
        raise UnstableSystemError(f"{l.where()}: continuous state matrix has an eigenvalue with real part "
                                  f"{lam.real[k]:.6g} >= 0; it must be stable")
    cond = float(np.linalg.cond(V)) if A.size else 1.0
    if not np.isfinite(cond) or cond > cond_max:
        raise IllConditionedError(
            f"{l.where()}: eigenvector matrix of the shared {A.shape[0]}-state A has condition number "
            f"{cond:.3g} > {cond_max:.3g}; A is (nearly) defective and cannot be diagonalized reliably")
    l.params.update(A=lam.astype(complex), B=np.linalg.solve(V, B.astype(complex)), C=C.astype(complex) @ V)
    l.attrs["form"] = "diagonal"
    l.attrs["folded"] = False
    return cond


def mode_order(lam: np.ndarray) -> np.ndarray:
    """The order modes are kept in: slowest decay first, then by angle.
    With dense B and C every mode reads every input and feeds every output,
    so which modes share a core does not change the traffic (docs/placement.md);
    a fixed order keeps the output deterministic and puts modes of similar
    time scale on the same core."""
    return np.lexsort((np.angle(lam), -np.abs(lam))) if lam.size else np.zeros(0, np.int64)


def fold(l: Layer) -> tuple[int, int] | None:
    """Keep one mode of each conjugate pair, output gain 2; a real mode keeps
    half its C. None (left as it is) where the modes are not conjugate-
    symmetric: the system is then genuinely complex (its output Re(C x) is
    still exact, with gain 1)."""
    lam, B, C = l.params["A"], l.params["B"], l.params["C"]
    up, real, down = lam.imag > 0, lam.imag == 0, lam.imag < 0
    if up.sum() != down.sum():
        return None
    lu, ld = lam[up], lam[down]
    if lu.size:
        tol = 1e-9 * max(1.0, float(np.abs(lu).max()))
        # each mode's contribution C[:, k] B[k, :]; an eigenvalue's residue (the
        # sum over its modes: one, or several where it repeats, whose
        # eigenvectors any basis of the eigenspace may split differently)
        # must mirror its conjugate's
        cu = np.einsum("op,pi->pio", C[:, up], B[up])
        cd = np.einsum("op,pi->pio", C[:, down], B[down])
        scale = max(float(np.abs(cu).max()), 1e-300)
        seen, used = np.zeros(lu.size, bool), np.zeros(ld.size, bool)
        for j in range(lu.size):
            if seen[j]:
                continue
            g_up = ~seen & (np.abs(lu - lu[j]) <= tol)
            g_dn = ~used & (np.abs(ld - np.conj(lu[j])) <= tol)
            if g_up.sum() != g_dn.sum() or \
                    np.abs(cd[g_dn].sum(0) - np.conj(cu[g_up].sum(0))).max() > 1e-7 * scale:
                return None
            seen |= g_up
            used |= g_dn
    lam_f = np.concatenate([lam[up], lam[real]])
    B_f = np.concatenate([B[up], B[real]])
    C_f = np.concatenate([C[:, up], C[:, real] / 2.0], axis=1)
    order = mode_order(lam_f)
    l.params.update(A=lam_f[order], B=B_f[order], C=C_f[:, order])
    l.attrs["folded"] = True
    return lam.size, lam_f.size
