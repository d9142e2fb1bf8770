"""The driver: input checks, chunks of channels over worker processes, the
layer's mode count M and the M-lattice refit, and the honest error of the
returned realization (module doc of s4dc.passes.kernel_fit)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from s4dc.passes.kernel_fit.chunk import _fit_chunk
from s4dc.passes.kernel_fit.lattice import _lattice_at
from s4dc.passes.kernel_fit.modes import _model
from s4dc.passes.kernel_fit.state import FitSettings

_CHUNK = 32               # channels per batch (fixed: results do not depend on n_jobs)


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


def _fit_range(args: tuple[np.ndarray, FitSettings]) -> tuple[list, list, np.ndarray, list]:
    """Fit normalized kernels (n, L) chunk by chunk (one worker's share)."""
    kn, cfg = args
    with _single_thread():
        poles: list = []
        res: list = []
        errs = []
        hints: list = []
        for s in range(0, kn.shape[0], _CHUNK):
            p, r, e, hh = _fit_chunk(np.ascontiguousarray(kn[s:s + _CHUNK]), cfg)
            poles += p
            res += r
            errs.append(e)
            hints += hh
        return poles, res, (np.concatenate(errs) if errs else np.zeros(0)), hints


def _refit_lattices(args: tuple[list, int, FitSettings]) -> list:
    """Use the layer's M: for each (kernel, hint, current error) with fewer than M
    modes that has not decayed in the window, the lattice of exactly M modes,
    when it fits within tol/2, tamely and better than the current fit. Such a
    kernel is not identifiable from the window; for an S4D-Lin layer of M
    modes the M-lattice is the original system, whose continuation past the
    window is the right one. Returns (index, poles, residues, error) to apply."""
    items, M, cfg = args
    out = []
    with _single_thread():
        for idx, k, (top, rho0), err in items:
            fit = _lattice_at(k, top, rho0, M, cfg)
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

    cfg = FitSettings(tol=tol, cap=cap, rho_max=max_radius)
    norms = np.linalg.norm(k, axis=1)
    kn = k / np.where(norms > 0, norms, 1.0)[:, None]

    n_jobs = max(1, int(n_jobs))
    n_chunks = -(-H // _CHUNK)
    ex = None
    if n_jobs == 1 or n_chunks == 1:
        poles, res, errs, hints = _fit_range((kn, cfg))
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
            parts = list(ex.map(_fit_range, [(kn[a:b], cfg) for a, b in bounds]))
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
                updates = _refit_lattices((items, M, cfg))
            else:
                split = [items[i::len(bounds)] for i in range(len(bounds))]
                updates = [u for part in ex.map(_refit_lattices, [(it, M, cfg) for it in split])
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
