"""The S4D-Lin lattice rho * exp(i j delta): its closed-form least squares,
the Gauss-Newton polish of (delta, rho), and the lattice candidates of a
channel."""
from __future__ import annotations

import numpy as np
from s4dc.passes.kernel_fit.lstsq import _lstsq_tame
from s4dc.passes.kernel_fit.modes import _clip_radius, _coef_to_residues, _conj_closed, _model
from s4dc.passes.kernel_fit.ranking import _SWELL, _swell
from s4dc.passes.kernel_fit.state import FitSettings


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


def _tame_fit(k: np.ndarray, ev: np.ndarray, target: float) -> tuple:
    """An evaluated fit (poles, residues, residual norm, tame) of a pole set
    inside the disk, its residues continuation-penalized (`_lstsq_tame`)."""
    x, e = _lstsq_tame(k, ev, target)
    pq, rq = _coef_to_residues(ev[None], x[None])
    return pq[0], rq[0], e, _swell(pq[0], rq[0], k.shape[0]) <= _SWELL


def _lattice_init(pp: np.ndarray, w: np.ndarray, cfg: FitSettings) -> tuple[float, float, int] | None:
    """(theta_top, rho_top, n_sig) from a fit's upper poles: the highest-frequency
    significant pole near the unit circle, its radius, and the number of
    significant poles with positive frequency; None if there is none."""
    a = np.abs(pp)
    th = np.angle(pp)
    near = (a > 0.8) & (a < 1.25) & (th > 0)
    if not near.any():
        return None
    sig = near & (w > max(0.02 * float(np.median(w[near])), 0.3 * cfg.tol))
    if not sig.any():
        return None
    it = int(np.argmax(np.where(sig, th, -np.inf)))
    return float(th[it]), min(float(a[it]), cfg.rho_max), int(np.count_nonzero(sig))


def _lattice_at(k: np.ndarray, top: float, rho0: float, J: int, cfg: FitSettings) -> tuple | None:
    """The lattice of exactly J modes through theta_top, polished; an evaluated
    fit (poles, residues, residual norm, tame) or None."""
    tol, rho_max = cfg.tol, cfg.rho_max
    if J < 2 or 2 * J - 1 > k.shape[0]:
        return None
    nk = float(np.linalg.norm(k))
    lat = _Lattice(k, J)
    dl, rh, e = _lattice_gn(lat, top / (J - 1), rho0, rho_max, iters=15, good=0.01 * tol * nk)
    if not (np.isfinite(e) and e <= 0.5 * tol * nk):
        return None
    fit = _lattice_residues(k, lat, dl, rh, rho_max)
    if fit is None or not fit[3]:
        fit = _tame_fit(k, _clip_radius(_lattice_poles(dl, rh, J), rho_max), 0.5 * tol * nk)
    return fit


def _lattice_candidates(k: np.ndarray, pp: np.ndarray, w: np.ndarray, cfg: FitSettings) -> list[tuple]:
    """Lattice (S4D-Lin structure) candidates from a reference fit's upper poles pp.

    The highest-frequency significant pole sits at the edge of the mode
    cluster, where ESPRIT is accurate even when the cluster's interior is
    not, so theta_top = (J - 1) * delta pins delta for each lattice size J.
    Sizes are scored by one least-squares solve each, in increasing J; those
    whose score is small or drops sharply are polished by Gauss-Newton, and
    the scan stops at the first within tol whose continuation is tame.
    Returns evaluated fits (poles, residues, residual norm, tame).
    """
    tol, cap, rho_max = cfg.tol, cfg.cap, cfg.rho_max
    init = _lattice_init(pp, w, cfg)
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
                        fit = _tame_fit(k, _clip_radius(ev, rho_max), 0.5 * tol * nk)
                    found.append(fit)
                    if fit[3] and fit[2] <= tol * nk:
                        return found
                elif e < best_e:
                    best_e, best_ev = e, ev
        prev = e0
    if not found and best_ev is not None:
        found.append(_tame_fit(k, _clip_radius(best_ev, rho_max), 0.5 * tol * nk))
    return found
