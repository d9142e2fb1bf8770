"""Residues for a given pole set: plain least squares (normal equations or
QR), truncated SVD within a bound, and the continuation-penalized fit of
ill-conditioned sets."""
from __future__ import annotations

import numpy as np
from s4dc.passes.kernel_fit.modes import _coef_to_residues, _design, _powers


def _lstsq_qr(D: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Coefficients x minimizing ||k - D x|| by QR of the column-scaled D (batched)."""
    s = np.linalg.norm(D, axis=1)
    s = np.where(s > 0, s, 1.0)
    Q, R = np.linalg.qr(D / s[:, None, :])
    qtk = np.matmul(k[:, None, :], Q)[:, 0, :]
    # a tiny floor on R's diagonal for exactly singular (duplicate-pole) sets
    d = np.abs(np.diagonal(R, axis1=1, axis2=2))
    dmax = np.maximum(d.max(axis=1, keepdims=True), 1e-300)
    bad = d < 1e-14 * dmax
    if bad.any():
        R = R.copy()
        bi, ci = np.nonzero(bad)
        R[bi, ci, ci] = np.where(R[bi, ci, ci] >= 0, 1.0, -1.0) * 1e-14 * dmax[bi, 0]
    return np.linalg.solve(R, qtk[..., None])[..., 0] / s


def _lstsq_fit(k: np.ndarray, ev: np.ndarray, tol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients for pole sets ev (B, n) on kernels k (B, L).

    Returns (x (B, n), residual norm (B,)). Well-conditioned sets are solved by
    the normal equations (Cholesky of the column-scaled Gram matrix), the rest
    by QR, which keeps the residual near its optimum even for clustered poles.
    The residual is always computed from the coefficients returned.
    """
    B, L = k.shape
    D = _design(ev, L)
    s = np.linalg.norm(D, axis=1)
    s = np.where(s > 0, s, 1.0)
    Dn = D / s[:, None, :]
    DnT = np.swapaxes(Dn, 1, 2)
    G = np.matmul(DnT, Dn)
    rhs = np.matmul(DnT, k[:, :, None])[..., 0]
    x = np.zeros(ev.shape, dtype=float)
    use_qr = np.ones(B, bool)
    dratio = np.zeros(B)
    try:
        C = np.linalg.cholesky(G)
        dg = np.abs(np.diagonal(C, axis1=1, axis2=2))
        # 1/kappa(D) is about min/max of the Cholesky diagonal
        dratio = np.where(np.all(np.isfinite(dg), axis=1), dg.min(axis=1) / np.maximum(dg.max(axis=1), 1e-300), 0.0)
        ok = dratio > 1e-5
        if ok.any():
            y = np.linalg.solve(G[ok], rhs[ok][..., None])[..., 0]
            x[ok] = y / s[ok]
            use_qr[ok] = False
    except np.linalg.LinAlgError:
        pass
    res = np.linalg.norm(k - np.matmul(D, x[..., None])[..., 0], axis=1)
    # the normal equations lose accuracy as kappa^2: redo poor fits of
    # questionably conditioned sets by QR
    use_qr |= ~np.isfinite(res) | ((res > 0.5 * tol * np.linalg.norm(k, axis=1)) & (dratio < 1e-3))
    if use_qr.any():
        x[use_qr] = _lstsq_qr(D[use_qr], k[use_qr])
        res[use_qr] = np.linalg.norm(k[use_qr] - np.matmul(D[use_qr], x[use_qr][..., None])[..., 0], axis=1)
    return x, res


def _lstsq_tsvd(k: np.ndarray, ev: np.ndarray, target: float, bound: float = np.inf) -> tuple[np.ndarray, float]:
    """Smallest-norm coefficients (truncated SVD of the column-scaled design)
    whose residual is within target, or else the most accurate truncation whose
    coefficients stay within bound (in absolute value)."""
    L = k.shape[0]
    D = _design(ev[None], L)[0]
    s = np.linalg.norm(D, axis=0)
    s = np.where(s > 0, s, 1.0)
    U, S, Vt = np.linalg.svd(D / s, full_matrices=False)
    c = U.T @ k
    out2 = max(float(k @ k) - float(c @ c), 0.0)
    tail2 = np.concatenate([np.cumsum((c * c)[::-1])[::-1], [0.0]])   # tail2[r] = sum_{i >= r} c_i^2
    rmax = int(np.count_nonzero(S > 1e-14 * S[0])) if S.size else 0
    within = np.nonzero(out2 + tail2[: rmax + 1] <= target * target)[0]
    r = int(within[0]) if within.size else rmax
    x = (Vt[:r].T @ (c[:r] / S[:r])) / s
    while r > 0 and np.max(np.abs(x)) > bound:
        r -= 1
        x = (Vt[:r].T @ (c[:r] / S[:r])) / s
    return x, float(np.linalg.norm(k - D @ x))


def _tail_gram(ev: np.ndarray, L: int) -> np.ndarray:
    """Gram matrix of the real design columns over the whole continuation l >= L.

    Column m is Re(alpha_m p_m^l) (alpha = 1 for a Re column, -i for an Im
    column), so col_a * col_b = (Re(alpha_a alpha_b (p_a p_b)^l)
    + Re(alpha_a conj(alpha_b) (p_a conj(p_b))^l)) / 2, and
    sum_{l >= L} z^l = z^L / (1 - z) for |z| < 1.
    """
    alpha = np.where(ev.imag < 0, -1j, 1.0 + 0j)
    pL = _powers(ev[None], L + 1)[0][L]                      # p^L
    z1 = ev[:, None] * ev[None, :]
    z2 = ev[:, None] * np.conj(ev)[None, :]
    a1 = alpha[:, None] * alpha[None, :]
    a2 = alpha[:, None] * np.conj(alpha)[None, :]
    t1 = (pL[:, None] * pL[None, :]) / (1.0 - z1)
    t2 = (pL[:, None] * np.conj(pL)[None, :]) / (1.0 - z2)
    W = 0.5 * (np.real(a1 * t1) + np.real(a2 * t2))
    return 0.5 * (W + W.T)


def _lstsq_tame(k: np.ndarray, ev: np.ndarray, target: float) -> tuple[np.ndarray, float]:
    """Residues for pole set ev that fit kernel k within `target` while keeping
    the realization's continuation past the window small.

    Fallback pole sets (grids, lattices) are often ill-conditioned: plain
    least squares then returns large residues that cancel inside the window
    and stop cancelling beyond it, so the streamed response swells far past
    the kernel's scale. This solves
        min ||k - D x||^2 + lam * x^T W x,
    W the energy of the model over the whole continuation (l >= L, closed
    form), with the largest lam (bisection on log lam) whose window residual
    stays within target. In the SVD coordinates of the column-scaled window
    design D = U S V^T (y = S V^T x) every lam is an O(n^2) solve after one
    eigendecomposition of S^-1 V^T W V S^-1.
    """
    L = k.shape[0]
    D = _design(ev[None], L)[0]
    s = np.linalg.norm(D, axis=0)
    s = np.where(s > 0, s, 1.0)
    Q, R = np.linalg.qr(D / s)
    Ur, S, Vt = np.linalg.svd(R)
    keep = S > 1e-13 * S[0] if S.size else np.zeros(0, bool)
    Ur, S, Vt = Ur[:, keep], S[keep], Vt[keep]
    c = Ur.T @ (Q.T @ k)
    out2 = max(float(k @ k) - float(c @ c), 0.0)
    W = _tail_gram(ev, L) / np.outer(s, s)
    Vs = Vt.T / S
    M = Vs.T @ W @ Vs
    ok = np.all(np.isfinite(M))
    if ok:
        sb2, Qm = np.linalg.eigh(0.5 * (M + M.T))
        sb2 = np.maximum(sb2, 0.0)
        cq = Qm.T @ c

    def solve(lam):
        f = 1.0 / (1.0 + lam * sb2)
        y = Qm @ (f * cq)
        r2 = out2 + float(((1.0 - f) * cq) @ ((1.0 - f) * cq))
        return y, r2

    y = c
    t2 = target * target
    if ok and out2 <= t2:
        lo, hi = -30.0, 10.0          # log10 lam
        if solve(10.0 ** hi)[1] <= t2:
            lo = hi
        else:
            for _ in range(30):
                mid = 0.5 * (lo + hi)
                if solve(10.0 ** mid)[1] <= t2:
                    lo = mid
                else:
                    hi = mid
        y, _ = solve(10.0 ** lo)
    x = (Vt.T @ (y / S)) / s
    res = k - D @ x
    return x, float(np.linalg.norm(res))


def _eval_sets(k: np.ndarray, sets: list[np.ndarray], target: float | None = None) -> tuple[list, list, np.ndarray]:
    """Fit residues for a list of conjugate-closed pole sets (one per kernel row);
    with `target`, the smallest-norm residues within that residual."""
    if target is not None:
        out_p, out_r, errs = [], [], np.zeros(len(sets))
        for i, ev in enumerate(sets):
            if len(ev) == 0:
                out_p.append(np.zeros(0, complex))
                out_r.append(np.zeros(0, complex))
                errs[i] = np.linalg.norm(k[i])
                continue
            x, e = _lstsq_tame(k[i], ev, target)
            pp, rr = _coef_to_residues(ev[None], x[None])
            out_p.append(pp[0])
            out_r.append(rr[0])
            errs[i] = e
        return out_p, out_r, errs
    out_p: list = [None] * len(sets)
    out_r: list = [None] * len(sets)
    errs = np.zeros(len(sets))
    sizes = np.array([len(s) for s in sets])
    for n in np.unique(sizes):
        idx = np.nonzero(sizes == n)[0]
        if n == 0:
            for i in idx:
                out_p[i], out_r[i] = np.zeros(0, complex), np.zeros(0, complex)
                errs[i] = np.linalg.norm(k[i])
            continue
        ev = np.stack([sets[i] for i in idx])
        x, rn = _lstsq_fit(k[idx], ev)
        pp, rr = _coef_to_residues(ev, x)
        for j, i in enumerate(idx):
            out_p[i], out_r[i] = pp[j], rr[j]
            errs[i] = rn[j]
    return out_p, out_r, errs
