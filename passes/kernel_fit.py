"""Kernel fit: recover a stable diagonal state space from convolution kernels.

Each channel h of a depthwise causal convolution has a kernel k[h, l],
l = 0 .. L-1 (l = 0 is the zero-delay tap). `fit_kernels` finds poles p and
residues r such that

    k_hat[h, l] = 2 * Re( sum_m r[h, m] * p[h, m] ** l )

matches k[h] to a relative L2 error `tol` with every |p| <= max_radius < 1,
using the smallest number of modes M (one per conjugate pair, real poles
count as one) that meets `tol` for every channel of the layer.

Stability is part of the fit, not a clean-up afterwards. A kernel that has
not decayed inside the window cannot be identified uniquely from it, and an
unconstrained fit then places real energy in modes with |p| > 1: they
reproduce the window but grow without bound when the recurrence streams past
L, which is how Loihi 2 runs it. Every candidate whose poles leave the disk is
rejected; the reported error is always that of the returned, stable
realization, recomputed from its poles and residues.

Algorithm, per channel (batched over channels with numpy, one BLAS thread):

1. Subspace: the Hankel matrix of the kernel (about L/2 x L/2) is sketched
   with a fixed-seed Gaussian test matrix (products with the Hankel matrix
   are correlations, done by FFT); its left singular vectors and singular
   values give the signal subspace and the starting model order.
2. ESPRIT (matrix pencil): for a model order n the poles are the eigenvalues
   of the least-squares shift operator of the top-n subspace, the residues a
   least-squares fit of the kernel. A fit counts only if every pole is
   stable. Channels not fitted at the singular-value order get a sharper
   subspace (one power iteration: the summed noise of the sketch otherwise
   blurs the weak directions of clustered modes) and an order search.
3. Stable candidates for the channels whose ESPRIT fits stay unstable (the
   kernels that have not decayed inside the window; for stock S4D, dt * L
   below about 4):
   a. lattice: rho * exp(i j delta), j = 0 .. J-1, the structure of S4D-Lin
      (uniform frequencies, common radius). The highest-frequency pole of
      the unconstrained fit sits at the edge of the mode cluster, where
      ESPRIT stays accurate, so theta_top = (J-1) delta pins delta for each
      J; the sizes are scanned upward and Gauss-Newton (variable projection,
      rho <= max_radius) polishes (delta, rho). When the lattice is finer
      than the window resolves, it fits like a Fourier extension.
   b. damped Fourier-extension grids over the kernel's band, the ESPRIT poles
      reflected into the disk and clamped, for short kernels an exact stable
      interpolation (rho * DFT frequencies), and as a last resort `cap` modes
      spread over the band.
   Residues of these (often ill-conditioned) sets minimize the window error
   plus a penalty on the realization's energy past the window, with the
   largest penalty keeping the error within tol/2: plain least squares would
   return large residues that cancel in the window and not beyond it.
4. Choice per channel: within tol and "tame" (the realized kernel over
   [L, 4L) peaks below 16x its peak inside the window), then fewest modes,
   then smallest error. Residues above 1e6 x ||k|| (FIR-like kernels imitated
   by near-zero poles) are cut back by truncated SVD, error reported as is.
5. M = the largest per-channel mode count (or n_modes). A channel whose
   kernel has not decayed and that used fewer than M modes is refitted with
   the M-mode lattice when that fits within tol/2, tamely and better: for an
   S4D-Lin layer this recovers the original modes (and so the original
   continuation past the window) of kernels the window cannot resolve.
   Channels still needing fewer modes are padded with pole 0 and residue 0.
   rel_error is recomputed from the returned poles and residues.

Beyond the window, a kernel that has not decayed is not determined by the
data: the realization's continuation is stable, and of the kernel's scale
(at most _SWELL x its peak), but need not be the original system's.

Deterministic: the sketch uses a fixed seed, channels are processed in fixed
chunks of 32 whose results depend on their own data only, so results are
bit-identical across calls and across `n_jobs`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["KernelFit", "fit_kernels"]

_SEED = 20240917          # fixed seed of the Gaussian sketch
_CHUNK = 32               # channels per batch (fixed: results do not depend on n_jobs)
_SKETCH_MIN = 72          # sketch width (columns) for the first pass
_OVERSAMPLE = 12          # extra sketch columns beyond the largest order tried


@dataclass(frozen=True)
class KernelFit:
    """A stable folded diagonal realization of H kernels.

    Attributes:
        poles: (H, M) complex128 discrete-time eigenvalues, one per conjugate
            pair (the one with Im >= 0); real poles have Im == 0; every
            |pole| <= max_radius < 1. Padding modes have pole 0.
        residues: (H, M) complex128; padding modes have residue 0.
        rel_error: (H,) float64, ||k - k_hat||_2 / ||k||_2 over the window
            (0.0 for an all-zero kernel), with
            k_hat[h, l] = 2 * Re(sum_m residues[h, m] * poles[h, m] ** l).
    """

    poles: np.ndarray
    residues: np.ndarray
    rel_error: np.ndarray

    @property
    def n_modes(self) -> int:
        """M, the number of (folded) modes per channel."""
        return int(self.poles.shape[1])


# --------------------------------------------------------------------------- helpers

def _powers(p: np.ndarray, L: int) -> np.ndarray:
    """p ** l for l = 0 .. L-1, shape p.shape[:-1] + (L, n), complex128.

    Blocked: p**(b*a + c) = (p**b)**a * p**c, two small exponentials and one
    product, accurate to a few ulp. Exact zeros give [1, 0, 0, ...].
    """
    p = np.asarray(p, dtype=np.complex128)
    b = max(1, int(np.ceil(np.sqrt(L))))
    a_n = -(-L // b)
    zero = p == 0
    logp = np.log(np.where(zero, 1.0, p))
    lo = np.exp(np.arange(b)[:, None] * logp[..., None, :])           # (..., b, n)
    hi = np.exp((b * np.arange(a_n))[:, None] * logp[..., None, :])   # (..., a_n, n)
    out = (hi[..., :, None, :] * lo[..., None, :, :]).reshape(p.shape[:-1] + (a_n * b, p.shape[-1]))[..., :L, :]
    if zero.any():
        out = np.where(zero[..., None, :], 0.0, out)
        first = out[..., 0, :]
        first[...] = 1.0
    return out


def _model(poles: np.ndarray, residues: np.ndarray, L: int) -> np.ndarray:
    """k_hat[..., l] = 2 Re(sum_m r_m p_m^l), shape (..., L)."""
    if poles.shape[-1] == 0:
        return np.zeros(poles.shape[:-1] + (L,))
    P = _powers(poles, L)
    return 2.0 * np.real(np.einsum("...lm,...m->...l", P, residues))


def _design(ev: np.ndarray, L: int) -> np.ndarray:
    """Real design matrices (B, L, n) for conjugate-closed pole sets ev (B, n).

    Column m is Re(p^l) for Im(p_m) >= 0 and Im(p^l) for Im(p_m) < 0 (the
    partner of a pair), so the model is real and linear in the coefficients.
    """
    P = _powers(ev, L)
    return np.where((ev.imag < 0)[:, None, :], P.imag, P.real)


def _coef_to_residues(ev: np.ndarray, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Fold real LS coefficients of a conjugate-closed pole set into (poles, residues) per channel."""
    out_p, out_r = [], []
    for e, c in zip(ev, x):
        pos = e.imag > 0
        real = e.imag == 0
        neg = e.imag < 0
        pp, rr = [], []
        if real.any():
            pp.append(e[real].real.astype(np.complex128))
            rr.append(c[real].astype(np.complex128) / 2.0)
        if pos.any():
            ep, cp = e[pos], c[pos]
            en, cn = e[neg], c[neg]
            # pair each upper pole with its conjugate partner
            idx = np.argmin(np.abs(ep[:, None] - np.conj(en)[None, :]), axis=1)
            pp.append(ep)
            # model: cp Re(p^l) + cn Im(conj(p)^l) = Re((cp + i cn) p^l)
            rr.append((cp + 1j * cn[idx]) / 2.0)
        out_p.append(np.concatenate(pp) if pp else np.zeros(0, complex))
        out_r.append(np.concatenate(rr) if rr else np.zeros(0, complex))
    return out_p, out_r


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


def _stabilize(p: np.ndarray, rho: float) -> np.ndarray:
    """Reflect poles outside the unit circle (p -> 1/conj(p)) and clamp to radius rho."""
    a = np.abs(p)
    p = np.where(a > 1.0, p / np.maximum(a * a, 1e-300), p)
    a = np.abs(p)
    return np.where(a > rho, p * (rho / np.maximum(a, 1e-300)), p)


def _clip_radius(p: np.ndarray, rho: float) -> np.ndarray:
    """Scale poles with |p| > rho onto radius rho (guarding against rounding)."""
    a = np.abs(p)
    over = a > rho
    if not over.any():
        return p
    p = np.where(over, p * (rho / np.maximum(a, 1e-300)), p)
    a = np.abs(p)
    return np.where(a > rho, p * (1.0 - 4e-16), p)


def _conj_closed(upper: np.ndarray) -> np.ndarray:
    """Expand poles with Im >= 0 (reals included once) into a conjugate-closed set."""
    cx = upper[upper.imag > 0]
    return np.concatenate([upper, np.conj(cx)])


def _slots(ev: np.ndarray) -> int:
    """Number of folded modes of a conjugate-closed pole set."""
    return int(np.count_nonzero(ev.imag >= 0))


# --------------------------------------------------------------------------- subspace

def _subspace(k: np.ndarray, width: int, power: int, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors U (B, p, r) and singular values S (B, r) of the
    Hankel matrices (p = L - L//2 + 1 rows, q = L//2 columns) of kernels k (B, L).

    With width >= q the Hankel matrix itself is decomposed. Otherwise it is
    sketched with a fixed-seed Gaussian test matrix, with `power` subspace
    iterations: without one, the noise of the ~q small singular values adds up
    in the sketch and blurs the weakest signal directions, which the
    clustered modes of non-decaying kernels need.
    """
    L = k.shape[1]
    q = L // 2
    p = L - q + 1
    if width >= q:
        Y = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(k, q, axis=1))
    else:
        # products with the Hankel matrix are correlations with the kernel:
        # (H x)[i] = sum_t k[i+t] x[t] and (H^T y)[t] = sum_i k[i+t] y[i] need no
        # wrap-around in a circular correlation of length L, so one rfft of the
        # kernel serves every product (exact to rounding, 3x faster than GEMM)
        key = (L, width)
        Omf = cache.get(key)
        if Omf is None:
            Om = np.random.default_rng(_SEED + 7919 * q + width).standard_normal((q, width)) / np.sqrt(width)
            Omf = np.conj(np.fft.rfft(Om.T, L))                      # (r, L/2+1)
            cache[key] = Omf
        Kf = np.fft.rfft(k, L)[:, None, :]                            # (B, 1, L/2+1)
        Yt = np.fft.irfft(Kf * Omf[None], L)[:, :, :p]               # (B, r, p): Y^T
        for _ in range(power):
            Zt = np.fft.irfft(Kf * np.conj(np.fft.rfft(Yt, L)), L)[:, :, :q]   # (H^T Y)^T
            Qz = np.linalg.qr(np.swapaxes(Zt, 1, 2))[0]              # (B, q, r)
            Yt = np.fft.irfft(Kf * np.conj(np.fft.rfft(np.swapaxes(Qz, 1, 2), L)), L)[:, :, :p]
        Y = np.ascontiguousarray(np.swapaxes(Yt, 1, 2))               # (B, p, r)
    # U = Y V S^-1 from the R factor alone (R = Ur S V^T): the weakest
    # directions kept (S > 1e-13 S[0]) are accurate to about eps * S[0] / S
    R = np.linalg.qr(Y, mode="r")
    _, S, Vt = np.linalg.svd(R)
    Sinv = np.where(S > 1e-13 * S[:, :1], 1.0 / np.where(S > 0, S, 1.0), 0.0)
    U = np.matmul(Y, np.swapaxes(Vt, 1, 2) * Sinv[:, None, :])
    return U, np.where(Sinv > 0, S, 0.0)


def _esprit(U: np.ndarray, n: int) -> np.ndarray:
    """ESPRIT poles of order n from subspace bases U (B, p, r): eigenvalues of
    the least-squares shift operator of the top-n subspace."""
    Un = U[:, :, :n]
    G = np.matmul(np.swapaxes(Un[:, :-1], 1, 2), Un[:, 1:])
    u = Un[:, -1, :]
    den = 1.0 - (u * u).sum(axis=1)
    den = np.where(den > 1e-12, den, 1e-12)
    X = G + u[:, :, None] * np.matmul(u[:, None, :], G) / den[:, None, None]
    try:
        return np.linalg.eigvals(X)
    except np.linalg.LinAlgError:   # rare non-convergence: per matrix, zeros where it fails
        out = np.zeros(X.shape[:2], complex)
        for b in range(X.shape[0]):
            try:
                out[b] = np.linalg.eigvals(X[b])
            except np.linalg.LinAlgError:
                pass
        return out


# --------------------------------------------------------------------------- candidates

_RES_MAX = 1e6  # largest |residue| / ||k|| of a returned realization
_SWELL = 16.0  # a continuation peaking above this multiple of the window's peak is "swelling"


def _swell(poles: np.ndarray, residues: np.ndarray, L: int) -> float:
    """max |k_hat[l]| over l in [L, 4L) divided by max |k_hat[l]| over the window."""
    if poles.size == 0:
        return 0.0
    kh = _model(poles[None], residues[None], 4 * L)[0]
    inside = float(np.max(np.abs(kh[:L])))
    return float(np.max(np.abs(kh[L:]))) / max(inside, 1e-300)


class _Best:
    """Per-channel best candidate.

    Ranking: within tol and tame (the streamed continuation does not swell
    past _SWELL times the window's peak) beats within tol, which beats
    outside tol; then fewer modes; then smaller error.
    """

    def __init__(self, n: int, tol: float):
        self.tol = tol
        self.poles: list = [None] * n
        self.res: list = [None] * n
        self.err = np.full(n, np.inf)
        self.slots = np.full(n, 1 << 30)
        self.tame = np.zeros(n, bool)

    def _rank(self, err: float, tame: bool) -> int:
        return 2 if (err <= self.tol and tame) else (1 if err <= self.tol else 0)

    def offer(self, i: int, poles: np.ndarray, residues: np.ndarray, err: float, tame: bool = True) -> None:
        s = len(poles)
        if not np.isfinite(err):
            return
        rn, ro = self._rank(err, tame), self._rank(self.err[i], bool(self.tame[i]))
        if rn != ro:
            better = rn > ro
        elif rn > 0:
            better = s < self.slots[i] or (s == self.slots[i] and err < self.err[i])
        else:
            better = err < self.err[i]
        if better:
            self.poles[i], self.res[i], self.err[i], self.slots[i] = poles, residues, err, s
            self.tame[i] = tame

    def done(self, i: int) -> bool:
        return bool(self.err[i] <= self.tol and self.tame[i])


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


def _fe_poles(theta_b: float, L: int, cap: int, rho: float, c: float, j_min: int = 2) -> np.ndarray | None:
    """Damped Fourier-extension grid rho * exp(i j delta), j = 0 .. J-1, covering
    [0, 1.15 theta_b] with spacing at most c*pi/L and at least j_min modes."""
    band = min(theta_b, np.pi / 1.15) * 1.15
    delta = c * np.pi / L
    J = max(int(np.ceil(band / delta)) + 1, j_min, 2)
    if J > cap or 2 * J - 1 > L:
        return None
    delta = min(delta, band / (J - 1)) if band > 0 else delta
    th = np.arange(J) * delta
    th = th[th < np.pi]
    up = rho * np.exp(1j * th)
    up[0] = rho
    return _conj_closed(up)


def _dft_poles(L: int, rho: float) -> np.ndarray:
    """rho * exp(2 pi i j / L), j = 0 .. L//2: a stable basis that represents any
    length-L kernel exactly (L real degrees of freedom); beyond the window the
    realization repeats it, damped by rho**L per period."""
    j = np.arange(L // 2 + 1)
    up = rho * np.exp(2j * np.pi * j / L)
    up[0] = rho
    if L % 2 == 0:
        up[-1] = -rho
    return _conj_closed(up)


def _lattice_poles(delta: float, rho: float, J: int) -> np.ndarray:
    """Conjugate-closed lattice rho * exp(+-i j delta), j = 0 .. J-1 (j = 0 real)."""
    th = np.arange(J) * delta
    up = rho * np.exp(1j * th)
    up[0] = rho
    return _conj_closed(up[th < np.pi])


class _Lattice:
    """Least squares of a kernel on the lattice rho * exp(i j delta), j = -(J-1) .. J-1.

    The residues are eliminated through the lattice's Hermitian Toeplitz Gram
    matrix, which has a closed form (geometric sums), so an evaluation costs
    O(L J + J^3). Used for the lattice scan and its Gauss-Newton polish.
    """

    def __init__(self, k: np.ndarray, J: int):
        self.k = k
        self.L = k.shape[0]
        self.J = J
        self.l = np.arange(self.L, dtype=float)
        self.js = np.arange(-(J - 1), J, dtype=float)
        self.gidx = (self.js[None, :] - self.js[:, None]).astype(int) + (2 * J - 2)
        self.dd = np.arange(-(2 * J - 2), 2 * J - 1, dtype=float)

    def solve(self, delta: float, rho: float):
        """Least squares on the lattice. Returns (E, G, c, res): E (L, J) the
        modes j >= 0, G the Gram matrix, c the coefficients of j = -(J-1)..J-1."""
        J, L = self.J, self.L
        # row j: rho^l exp(i j delta l), as (high block) x (low block) products
        e = np.exp(1j * delta * self.l)
        b = max(1, int(np.ceil(np.sqrt(J))))
        lo = np.empty((b, L), complex)
        lo[0] = rho ** self.l
        for j in range(1, b):
            lo[j] = lo[j - 1] * e
        a_n = -(-J // b)
        hi = np.empty((a_n, L), complex)
        hi[0] = 1.0
        eb = np.exp(1j * delta * b * self.l)
        for j in range(1, a_n):
            hi[j] = hi[j - 1] * eb
        E = (hi[:, None, :] * lo[None, :, :]).reshape(a_n * b, L)[:J].T
        w = (rho * rho) * np.exp(1j * delta * self.dd)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            gs = np.where(np.abs(1 - w) > 1e-13, (1 - w ** L) / (1 - w), float(L))
        G = gs[self.gidx]
        c = np.linalg.solve(G, self.herm(E, self.k))
        res = self.k - self.apply(E, c)
        return E, G, c, res

    @staticmethod
    def herm(E: np.ndarray, x: np.ndarray) -> np.ndarray:
        """V^H x for real x (last axis of E^H x; rows j = -(J-1)..J-1)."""
        b = E.conj().T @ x
        return np.concatenate([np.conj(b[:0:-1]), b], axis=0)

    @staticmethod
    def apply(E: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Re(V c): the conjugate half folds onto E (Re(conj(z) a) = Re(z conj(a)))."""
        J = E.shape[1]
        d = c[J - 1:].copy()
        d[1:] += np.conj(c[J - 2::-1])
        return np.real(E @ d)


def _lattice_gn(lat: _Lattice, delta: float, rho: float, rho_max: float,
                iters: int = 10, good: float = 0.0) -> tuple[float, float, float]:
    """Gauss-Newton with variable projection (Levenberg damping) on the lattice's
    (delta, rho), rho <= rho_max; stops early once the residual is <= good.
    Returns (delta, rho, residual norm)."""
    l = lat.l
    J = lat.J
    jpos = np.arange(J, dtype=float)
    rho = min(rho, rho_max)
    try:
        E, G, c, res = lat.solve(delta, rho)
    except np.linalg.LinAlgError:
        return delta, rho, np.inf
    cur = float(np.linalg.norm(res))
    lam = 1e-4
    for _ in range(iters):
        if cur <= good:
            break
        # model = Re(E d), d_j = c_j + conj(c_-j); d/d delta brings i j l, d/d rho brings l / rho
        d = c[J - 1:].copy()
        d[1:] += np.conj(c[J - 2::-1])
        Ed = E * d[None, :]
        gd = l * np.real(Ed @ (1j * jpos))
        gr = l * np.real(Ed.sum(axis=1)) / rho
        Jm = np.stack([gd, gr], axis=1)
        try:
            y = np.linalg.solve(G, lat.herm(E, Jm))
        except np.linalg.LinAlgError:
            break
        Jp = Jm - np.stack([lat.apply(E, y[:, 0]), lat.apply(E, y[:, 1])], axis=1)
        A = Jp.T @ Jp
        g = Jp.T @ res
        improved = False
        for _ in range(4):
            try:
                step = np.linalg.solve(A + lam * np.diag(np.diag(A) + 1e-300), g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            nd, nr = delta + step[0], min(rho + step[1], rho_max)
            if not (np.all(np.isfinite(step)) and nd > 0 and nr > 0):
                lam *= 10
                continue
            try:
                E2, G2, c2, res2 = lat.solve(nd, nr)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            n2 = float(np.linalg.norm(res2))
            if n2 < cur:
                improved = cur - n2 > 1e-3 * cur
                delta, rho, E, G, c, res, cur = nd, nr, E2, G2, c2, res2, n2
                lam = max(lam / 10, 1e-12)
                break
            lam *= 10
        if not improved:
            break
    return delta, rho, cur


def _lattice_residues(k: np.ndarray, lat: _Lattice, delta: float, rho: float, rho_max: float):
    """(poles, residues, residual norm, tame) of the lattice's own least-squares fit."""
    J = lat.J
    if delta * (J - 1) >= np.pi:
        return None
    try:
        _, _, c, _ = lat.solve(delta, rho)
    except np.linalg.LinAlgError:
        return None
    d = c[J - 1:].copy()
    d[1:] += np.conj(c[J - 2::-1])
    p = _clip_radius(rho * np.exp(1j * delta * np.arange(J)), rho_max)
    p[0] = p[0].real
    r = d / 2.0
    r[0] = r[0].real
    L = k.shape[0]
    err = float(np.linalg.norm(k - _model(p[None], r[None], L)[0]))
    return p, r, err, _swell(p, r, L) <= _SWELL


def _pole_weights(pp: np.ndarray, rr: np.ndarray, L: int) -> np.ndarray:
    """Window energy of each folded mode of a fit: |r| sqrt(sum_l |p|^2l)."""
    a = np.abs(pp)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        a2 = a * a
        energy = np.where(np.abs(1 - a2) > 1e-12, (1 - a2 ** L) / (1 - a2), float(L))
        w = np.abs(rr) * np.sqrt(np.abs(energy))
    return np.where(np.isfinite(w), w, np.max(w[np.isfinite(w)], initial=0.0) * 10 + 1.0)


def _lattice_init(pp: np.ndarray, w: np.ndarray, tol: float, rho_max: float):
    """(theta_top, rho_top, n_sig) from a fit's upper poles: the highest-frequency
    significant pole near the unit circle, its radius, and the number of
    significant poles with positive frequency; None if there is none."""
    a = np.abs(pp)
    th = np.angle(pp)
    near = (a > 0.8) & (a < 1.25) & (th > 0)
    if not near.any():
        return None
    sig = near & (w > max(0.02 * float(np.median(w[near])), 0.3 * tol))
    if not sig.any():
        return None
    it = int(np.argmax(np.where(sig, th, -np.inf)))
    return float(th[it]), min(float(a[it]), rho_max), int(np.count_nonzero(sig))


def _lattice_at(k: np.ndarray, top: float, rho0: float, J: int, tol: float, rho_max: float):
    """The lattice of exactly J modes through theta_top, polished; an evaluated
    fit (poles, residues, residual norm, tame) or None."""
    if J < 2 or 2 * J - 1 > k.shape[0]:
        return None
    nk = float(np.linalg.norm(k))
    lat = _Lattice(k, J)
    dl, rh, e = _lattice_gn(lat, top / (J - 1), rho0, rho_max, iters=15, good=0.01 * tol * nk)
    if not (np.isfinite(e) and e <= 0.5 * tol * nk):
        return None
    fit = _lattice_residues(k, lat, dl, rh, rho_max)
    if fit is None or not fit[3]:
        ev = _clip_radius(_lattice_poles(dl, rh, J), rho_max)
        x, ex = _lstsq_tame(k, ev, 0.5 * tol * nk)
        pq, rq = _coef_to_residues(ev[None], x[None])
        fit = (pq[0], rq[0], ex, _swell(pq[0], rq[0], k.shape[0]) <= _SWELL)
    return fit


def _lattice_candidates(k: np.ndarray, pp: np.ndarray, w: np.ndarray, tol: float, cap: int,
                        rho_max: float) -> list[tuple]:
    """Lattice (S4D-Lin structure) candidates from a reference fit's upper poles pp.

    The highest-frequency significant pole sits at the edge of the mode
    cluster, where ESPRIT is accurate even when the cluster's interior is
    not, so theta_top = (J - 1) * delta pins delta for each lattice size J.
    Sizes are scored by one least-squares solve each, in increasing J; those
    whose score is small or drops sharply are polished by Gauss-Newton, and
    the scan stops at the first within tol whose continuation is tame.
    Returns evaluated fits (poles, residues, residual norm, tame).
    """
    init = _lattice_init(pp, w, tol, rho_max)
    if init is None:
        return []
    top, rho0, n_sig = init
    rho_hi = rho_max
    nk = float(np.linalg.norm(k))
    # a resolved lattice shows all its modes in the reference fit; an
    # unresolved one shows fewer, never more
    j_lo = max(2, n_sig - 2)
    best_e, best_ev = np.inf, None
    found: list[np.ndarray] = []
    prev = None
    n_gn = 0
    for J in range(j_lo, min(cap, (k.shape[0] + 1) // 2) + 1):
        delta = top / (J - 1)
        if n_gn >= 8 or J - j_lo > 48:
            break
        lat = _Lattice(k, J)
        try:
            _, _, _, res = lat.solve(delta, rho0)
        except np.linalg.LinAlgError:
            continue
        e0 = float(np.linalg.norm(res)) / nk
        # polish sizes whose unpolished score is already small or drops sharply;
        # finer lattices also fit (Fourier-extension style) but need more modes,
        # so the first size that polishes to tol is the one wanted
        if e0 <= 0.05 or (prev is not None and e0 < 0.3 * prev):
            n_gn += 1
            dl, rh, e = _lattice_gn(lat, delta, rho0, rho_hi, good=0.1 * tol * nk)
            e /= nk
            if np.isfinite(e):
                ev = _lattice_poles(dl, rh, J)
                if e <= 0.5 * tol:
                    # accept when its continuation stays tame; else keep scanning
                    # (a larger lattice often extends the window more calmly).
                    # A resolved lattice is well conditioned: its own least-squares
                    # residues are used; otherwise the continuation-penalized ones.
                    fit = _lattice_residues(k, lat, dl, rh, rho_max)
                    if fit is None or not fit[3]:
                        evc = _clip_radius(ev, rho_max)
                        x, ex = _lstsq_tame(k, evc, 0.5 * tol * nk)
                        pq, rq = _coef_to_residues(evc[None], x[None])
                        fit = (pq[0], rq[0], ex, _swell(pq[0], rq[0], k.shape[0]) <= _SWELL)
                    found.append(fit)
                    if fit[3] and fit[2] <= tol * nk:
                        return found
                elif e < best_e:
                    best_e, best_ev = e, ev
        prev = e0
    if not found and best_ev is not None:
        ev = _clip_radius(best_ev, rho_max)
        x, ex = _lstsq_tame(k, ev, 0.5 * tol * nk)
        pq, rq = _coef_to_residues(ev[None], x[None])
        found.append((pq[0], rq[0], ex, _swell(pq[0], rq[0], k.shape[0]) <= _SWELL))
    return found


# --------------------------------------------------------------------------- per chunk

def _orders_from_sv(S: np.ndarray, tol: float, n_max: int) -> np.ndarray:
    """Initial model order per channel: the singular values above tol/3."""
    sr = S / np.maximum(S[:, :1], 1e-300)
    n0 = (sr > 0.3 * tol).sum(axis=1)
    return np.clip(n0, 1, max(1, min(n_max, S.shape[1] - 1)))


def _try_orders(k, live, idx, U, orders, best, tol, cap, rho_max, ref_fit, unstable_fit, decayed):
    """ESPRIT fits at the given order per channel (idx: rows of U / positions in
    live). Returns the number of folded modes of each fit (aligned with idx)."""
    slots = np.zeros(len(idx), dtype=int)
    for n in np.unique(orders):
        sel = idx[orders == n]
        ev = _esprit(U[sel], int(n))
        ev = np.where(np.abs(ev.imag) <= 1e-14 * np.abs(ev), ev.real + 0j, ev)
        x, rn = _lstsq_fit(k[live[sel]], ev, tol)
        pp, rr = _coef_to_residues(ev, x)
        pos = np.nonzero(orders == n)[0]
        for j, i in enumerate(sel):
            ci = live[i]
            stable = bool(np.all(np.abs(ev[j]) <= rho_max))
            slots[pos[j]] = _slots(ev[j])
            fits_cap = slots[pos[j]] <= cap
            if stable and fits_cap:
                tame = True
                if rn[j] <= tol and not decayed[ci]:
                    tame = _swell(pp[j], rr[j], k.shape[1]) <= _SWELL
                best.offer(ci, pp[j], rr[j], rn[j], tame)
            elif not stable:
                unstable_fit[i] = (ev[j], pp[j], rr[j], rn[j])
            cur = ref_fit[i]
            # reference unconstrained fit: the lowest order within tol/10, else the most accurate
            if cur is None or (cur[3] > 0.1 * tol and rn[j] < cur[3]):
                ref_fit[i] = (ev[j], pp[j], rr[j], rn[j])
    return slots


def _fit_chunk(k: np.ndarray, tol: float, cap: int, rho_max: float) -> tuple[list, list, np.ndarray, list]:
    """Fit a chunk of normalized kernels (B, L), each with ||k|| = 1 or 0.

    Returns per-channel poles (Im >= 0), residues, the relative fit error, and
    a lattice hint (theta_top, rho_top) for kernels that have not decayed in
    the window (None otherwise).
    """
    B, L = k.shape
    best = _Best(B, tol)
    norms = np.linalg.norm(k, axis=1)
    for i in range(B):  # the empty model is the baseline (exact for a zero kernel)
        best.offer(i, np.zeros(0, complex), np.zeros(0, complex), float(norms[i]))
    live = np.nonzero(norms > 0)[0]
    hints: list = [None] * B
    if live.size == 0 or cap == 0:
        return best.poles, best.res, best.err, hints

    q = L // 2
    p_rows = L - q + 1
    n_max = int(min(2 * cap, p_rows - 2, q - 1))
    if n_max < 1:
        # kernels too short for a Hankel matrix: exact stable interpolation
        if L // 2 + 1 <= cap:
            ev = _dft_poles(L, min(rho_max, float(np.exp(-1.0 / L))))
            for i in live:
                pp, rr, ee = _eval_sets(k[i:i + 1], [ev], 0.5 * tol)
                best.offer(i, pp[0], rr[0], ee[0])
        return best.poles, best.res, best.err, hints

    # kernels whose last tenth holds less than 1e-3 of their peak have decayed:
    # a stable fit of those cannot swell past the window
    peak = np.max(np.abs(k), axis=1)
    decayed = np.max(np.abs(k[:, L - max(1, L // 10):]), axis=1) <= 1e-3 * peak
    cache: dict = {}
    nl = len(live)
    ref_fit: list = [None] * nl
    unstable_fit: list = [None] * nl
    allidx = np.arange(nl)

    # ---- pass 1: plain sketch, ESPRIT at the singular-value order
    width = min(q, _SKETCH_MIN)
    U, S = _subspace(k[live], width, 0, cache)
    n0 = _orders_from_sv(S, tol, n_max)
    _try_orders(k, live, allidx, U, n0, best, tol, cap, rho_max, ref_fit, unstable_fit, decayed)
    todo = np.array([i for i in allidx if not best.done(live[i])], dtype=int)
    if todo.size == 0:
        return _finish(k, live, best, tol, ref_fit, decayed, hints, rho_max)

    # ---- pass 2: accurate subspace (one power iteration, wider when the rank needs it)
    need_w = n0[todo] + 3 * _OVERSAMPLE // 2
    need_w = np.where(n0[todo] >= width - 2, n_max + _OVERSAMPLE, need_w)   # rank fills the sketch
    for wgrp in np.unique(np.minimum(q, np.maximum(_SKETCH_MIN, need_w))):
        grp = todo[np.minimum(q, np.maximum(_SKETCH_MIN, need_w)) == wgrp]
        U2, S2 = _subspace(k[live[grp]], int(wgrp), 1, cache)
        m_max = min(n_max, U2.shape[2] - 1)
        n1 = _orders_from_sv(S2, tol, m_max)
        loc = np.arange(len(grp))
        order = n1.copy()
        top = np.full(len(grp), m_max)          # highest order allowed (mode cap)
        active = np.ones(len(grp), bool)
        for it, step in enumerate((1, 1, 2, 4, 8, 8, 8, 8)):
            a = loc[active]
            if a.size == 0:
                break
            # fits go into the shared lists through a view of positions
            sub_ref = [ref_fit[grp[j]] for j in range(len(grp))]
            sub_uns = [unstable_fit[grp[j]] for j in range(len(grp))]
            sl = _try_orders(k, live[grp], a, U2, order[a], best, tol, cap, rho_max, sub_ref, sub_uns, decayed)
            for j in range(len(grp)):
                ref_fit[grp[j]], unstable_fit[grp[j]] = sub_ref[j], sub_uns[j]
            for j, nsl in zip(a, sl):
                ci = live[grp[j]]
                rf = ref_fit[grp[j]]
                if nsl > cap:                    # too many modes: come back down
                    top[j] = order[j] - 1
                    order[j] = max(1, order[j] - (nsl - cap))
                    if order[j] > top[j] or it >= 6:
                        active[j] = False
                    continue
                # done: fitted; or the order is exhausted; or an unconstrained fit is
                # already accurate but unstable (more order will not make it stable)
                if best.done(ci) or order[j] >= top[j] or (rf is not None and rf[3] <= 0.1 * tol):
                    active[j] = False
                else:
                    order[j] = min(order[j] + step, top[j])

    # ---- fewer modes: an ESPRIT fit with several real poles (a near-real
    #      pair resolved as two reals, say) may have a neighbour order that
    #      needs fewer folded modes
    extra = []
    for i in allidx:
        ci = live[i]
        p = best.poles[ci]
        if best.done(ci) and p is not None and np.count_nonzero(p.imag == 0) >= 2:
            extra.append(i)
    if extra:
        extra = np.array(extra, dtype=int)
        n_b = np.array([2 * np.count_nonzero(best.poles[live[i]].imag > 0)
                        + np.count_nonzero(best.poles[live[i]].imag == 0) for i in extra])
        for dn in (-1, -2, 1):
            o = n_b + dn
            ok = (o >= 1) & (o <= min(n_max, U.shape[2] - 1))
            if ok.any():
                _try_orders(k, live, extra[ok], U, o[ok], best, tol, cap, rho_max,
                            [None] * nl, [None] * nl, decayed)

    # ---- pass 3: stable candidates for channels ESPRIT could not fit stably
    need = [i for i in allidx if not best.done(live[i])]
    if need:
        _fallbacks(k, live, need, ref_fit, unstable_fit, best, tol, cap, rho_max)

    return _finish(k, live, best, tol, ref_fit, decayed, hints, rho_max)


def _finish(k, live, best, tol, ref_fit, decayed, hints, rho_max):
    """Residue guard and lattice hints; the chunk's results."""
    L = k.shape[1]
    for i, ci in enumerate(live):
        if not decayed[ci] and ref_fit[i] is not None:
            _, pp, rr, _ = ref_fit[i]
            init = _lattice_init(pp, _pole_weights(pp, rr, L), tol, rho_max)
            if init is not None:
                hints[ci] = init[:2]
    # ---- conditioning guard: residues far beyond the kernel's scale cancel inside
    #      the window (near-zero poles imitating the taps of an FIR kernel, say).
    #      Such a realization is numerically meaningless (its value depends on
    #      rounding, and no fixed-point format holds it), so residues are bounded
    #      by _RES_MAX x ||k||: the largest truncated-SVD fit within the bound,
    #      its (larger) error reported as it is.
    for ci in live:
        p, r = best.poles[ci], best.res[ci]
        if p is None or p.size == 0 or np.max(np.abs(r)) <= _RES_MAX:
            continue
        ev = _conj_closed(p)
        x, e = _lstsq_tsvd(k[ci], ev, 0.5 * tol, bound=_RES_MAX)
        pp, rr = _coef_to_residues(ev[None], x[None])
        best.poles[ci], best.res[ci], best.err[ci] = pp[0], rr[0], e
    return best.poles, best.res, best.err, hints


def _fallbacks(k, live, need, ref_fit, unstable_poles, best, tol, cap, rho_max):
    """Stable candidates for the channels whose ESPRIT fits were unstable, above
    tol, or swelling: the lattice first, then (when it fails) a damped
    Fourier extension, the ESPRIT poles reflected and clamped, and for short
    kernels an exact stable interpolation. The reference unconstrained ESPRIT
    fit of each channel shows the band, radius and lattice of its kernel.
    Residues of these often ill-conditioned sets come from `_lstsq_tame`."""
    L = k.shape[1]
    for i in need:
        ci = live[i]
        kk = k[ci]
        if ref_fit[i] is None:
            continue
        _, pp, rr, _ = ref_fit[i]
        a = np.abs(pp)
        w = _pole_weights(pp, rr, L)

        # a. lattice (S4D-Lin structure)
        for pq, rq, eq, tame in _lattice_candidates(kk, pp, w, tol, cap, rho_max):
            best.offer(ci, pq, rq, eq, tame)
        if best.done(ci):
            continue

        # b. the rest, in increasing mode count, until one is within tol and tame
        sig = w > max(0.3 * tol, 0.02 * float(np.median(w)) if w.size else 0.0)
        theta_b = max(float(np.max(np.abs(np.angle(pp[sig])), initial=0.0)), 2 * np.pi / L)
        j_min = int(np.count_nonzero(sig)) + 2
        rad = a[sig & (a > 0)]
        rho_fe = float(np.median(rad)) if rad.size else rho_max
        rho_fe = min(float(np.clip(rho_fe, np.exp(-3.0 / L), np.exp(-0.25 / L))), rho_max)
        cands: list[np.ndarray] = []
        for c in (1.5, 1.25, 1.0):
            ev_fe = _fe_poles(theta_b, L, cap, rho_fe, c, j_min)
            if ev_fe is not None:
                cands.append(ev_fe)
        cands.append(_conj_closed(_stabilize(pp, rho_max)))
        if unstable_poles[i] is not None:
            cands.append(_conj_closed(_stabilize(unstable_poles[i][1], rho_max)))
        if L // 2 + 1 <= cap:   # short kernels: exact stable interpolation
            cands.append(_dft_poles(L, float(np.exp(-1.0 / L))))
        else:                   # last resort: cap modes spread over the band
            g = _fe_poles(theta_b, L, cap, rho_fe, 2.0 * L * theta_b * 1.15 / (np.pi * max(cap - 1, 1)), cap)
            if g is not None:
                cands.append(g)
        cands = [_clip_radius(c, rho_max) for c in cands if _slots(c) <= cap and len(c) <= L]
        cands.sort(key=_slots)
        for c in cands:
            if best.done(ci) and _slots(c) >= best.slots[ci]:
                break
            p_l, r_l, e_l = _eval_sets(kk[None], [c], 0.5 * tol)
            best.offer(ci, p_l[0], r_l[0], e_l[0], _swell(p_l[0], r_l[0], L) <= _SWELL)


# --------------------------------------------------------------------------- driver

def _fit_range(args) -> tuple[list, list, np.ndarray, list]:
    kn, tol, cap, rho_max = args
    with _single_thread():
        poles: list = []
        res: list = []
        errs = []
        hints: list = []
        for s in range(0, kn.shape[0], _CHUNK):
            p, r, e, hh = _fit_chunk(np.ascontiguousarray(kn[s:s + _CHUNK]), tol, cap, rho_max)
            poles += p
            res += r
            errs.append(e)
            hints += hh
        return poles, res, (np.concatenate(errs) if errs else np.zeros(0)), hints


def _refit_lattices(args) -> list:
    """Use the layer's M: for each (kernel, hint, current error) with fewer than M
    modes that has not decayed in the window, the lattice of exactly M modes,
    when it fits within tol/2, tamely and better than the current fit. Such a
    kernel is not identifiable from the window; for an S4D-Lin layer of M
    modes the M-lattice is the original system, whose continuation past the
    window is the right one. Returns (index, poles, residues, error) to apply."""
    items, M, tol, rho_max = args
    out = []
    with _single_thread():
        for idx, k, (top, rho0), err in items:
            fit = _lattice_at(k, top, rho0, M, tol, rho_max)
            if fit is not None and fit[3] and fit[2] < err:
                out.append((idx, fit[0], fit[1], fit[2]))
    return out


class _NullCtx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _single_thread():
    """Limit BLAS to one thread while fitting (batched small LAPACK calls are
    much slower with several threads). Uses threadpoolctl when installed."""
    try:
        from threadpoolctl import threadpool_limits
    except Exception:  # pragma: no cover - optional
        return _NullCtx()
    return threadpool_limits(limits=1, user_api="blas")


def fit_kernels(kernels: np.ndarray, *, tol: float = 1e-5, max_modes: int = 64,
                n_modes: int | None = None, max_radius: float = 1.0 - 1e-7,
                n_jobs: int = 1) -> KernelFit:
    """Fit stable folded diagonal state spaces to H real kernels of length L.

    Args:
        kernels: (H, L) real array (float32 or float64); kernels[h, 0] is the
            zero-delay tap.
        tol: target relative L2 error per channel.
        max_modes: largest M tried when n_modes is None.
        n_modes: if given, use exactly this M (each channel uses at most M
            modes, padded to M).
        max_radius: every returned |pole| is <= max_radius (< 1).
        n_jobs: worker processes; channels are split in fixed chunks so the
            result does not depend on n_jobs.

    Returns:
        KernelFit with poles, residues (H, M) and rel_error (H,). When even
        max_modes (or n_modes) does not reach tol for some channel, the best
        stable fit found is returned and its rel_error exceeds tol; the
        caller decides.
    """
    k = np.asarray(kernels)
    if k.ndim != 2:
        raise ValueError(f"kernels must be a 2-D (H, L) array, got shape {k.shape}")
    if np.iscomplexobj(k):
        raise ValueError("kernels must be real")
    k = k.astype(np.float64)
    if not np.all(np.isfinite(k)):
        raise ValueError("kernels hold NaN or Inf")
    if not (0.0 < max_radius < 1.0):
        raise ValueError(f"max_radius must lie in (0, 1), got {max_radius}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if n_modes is not None:
        if int(n_modes) < 0:
            raise ValueError(f"n_modes must be >= 0, got {n_modes}")
        cap = int(n_modes)
    else:
        if int(max_modes) < 0:
            raise ValueError(f"max_modes must be >= 0, got {max_modes}")
        cap = int(max_modes)
    H, L = k.shape
    if H == 0 or L == 0:
        M = cap if n_modes is not None else 0
        return KernelFit(np.zeros((H, M), complex), np.zeros((H, M), complex), np.zeros(H))

    norms = np.linalg.norm(k, axis=1)
    kn = k / np.where(norms > 0, norms, 1.0)[:, None]

    n_jobs = max(1, int(n_jobs))
    n_chunks = -(-H // _CHUNK)
    ex = None
    if n_jobs == 1 or n_chunks == 1:
        poles, res, errs, hints = _fit_range((kn, tol, cap, max_radius))
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        # contiguous runs of whole chunks per worker: each chunk is computed
        # exactly as with n_jobs=1, so the result does not depend on n_jobs
        per = -(-n_chunks // n_jobs)
        bounds = [(c * _CHUNK, min(H, (c + per) * _CHUNK)) for c in range(0, n_chunks, per)]
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        old = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        for v in old:   # for spawned workers: one BLAS thread each
            os.environ[v] = "1"
        try:
            ex = cf.ProcessPoolExecutor(max_workers=len(bounds), mp_context=mp.get_context(method))
            parts = list(ex.map(_fit_range, [(kn[a:b], tol, cap, max_radius) for a, b in bounds]))
        finally:
            for v, val in old.items():
                if val is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = val
        poles, res, errs, hints = [], [], [], []
        for p, r, e, hh in parts:
            poles += p
            res += r
            errs.append(e)
            hints += hh
        errs = np.concatenate(errs)

    M = cap if n_modes is not None else max((len(p) for p in poles), default=0)
    # channels with fewer modes than the layer: the M-mode lattice where it fits better
    items = [(h, kn[h], hints[h], float(errs[h])) for h in range(H)
             if hints[h] is not None and len(poles[h]) < M]
    try:
        if items:
            if ex is None or len(items) < 8:
                updates = _refit_lattices((items, M, tol, max_radius))
            else:
                split = [items[i::len(bounds)] for i in range(len(bounds))]
                updates = [u for part in ex.map(_refit_lattices, [(it, M, tol, max_radius) for it in split])
                           for u in part]
            for h, p, r, e in updates:
                poles[h], res[h], errs[h] = p, r, e
    finally:
        if ex is not None:
            ex.shutdown()
    P = np.zeros((H, M), complex)
    R = np.zeros((H, M), complex)
    for h in range(H):
        p, r = poles[h], res[h]
        # a fitted mode at exactly 0 (a pure feed-through, p^l = [1, 0, ...]) is
        # moved to the smallest normal float, the same model, so that pole 0
        # always means padding
        p = np.where(p == 0, np.finfo(float).tiny + 0j, p)
        o = np.lexsort((np.abs(p), np.angle(p)))  # deterministic order: by angle, then radius
        P[h, :len(p)] = p[o]
        R[h, :len(p)] = r[o] * norms[h]
    # the honest error: recomputed from the returned realization
    rel = np.zeros(H)
    live = norms > 0
    if M and live.any():
        for s in range(0, H, 64):
            sl = slice(s, min(H, s + 64))
            kh = _model(P[sl], R[sl], L)
            rel[sl] = np.linalg.norm(k[sl] - kh, axis=1) / np.where(norms[sl] > 0, norms[sl], 1.0)
    elif live.any():
        rel[live] = 1.0
    rel[~live] = 0.0
    return KernelFit(poles=P, residues=R, rel_error=rel)
