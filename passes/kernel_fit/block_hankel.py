"""Block-Hankel realization: a stable MIMO diagonal state space from a full
(not depthwise) causal convolution kernel, the SISO kernel fit generalized.

A kernel K (H_out, H_in, L) (tap 0 is the zero-delay one) is matched by

    K[:, :, 0] = C B + D,   K[:, :, l] = C lam^l B  (l >= 1),   C (H_out, P), B (P, H_in)

(the IR's folded `mimo`: x_t = lam x_{t-1} + B u_t, y_t = 2 Re(C x_t) + D u_t,
one mode per conjugate pair, a real mode with half its C). The
eigensystem realization algorithm (Ho-Kalman / ERA) takes the SVD of the
block-Hankel matrix of the Markov parameters K[:, :, 1:], and for each model
order n from the singular values up gives a minimal (A, B, C~) with
K_l = C~ A^(l-1) B; diagonalized, C = C~ lam^-1 reads the new state.

Stability is part of the fit: a realization with a mode at |lam| >= 1 (a
kernel that has not decayed inside the window) would reproduce the window
and grow without bound past it, which is how Loihi 2 runs the recurrence.
Its unstable modes are pulled inside (radius `max_radius`, angle kept) and
the residues refitted by least squares on the whole kernel; a residue of
rank r becomes r modes of the same lam. The reported error is that of the
returned realization, recomputed from it. `fit_mimo_kernel` returns the
smallest order that meets `tol`, or the best it found (the caller refuses it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_RADIUS = 0.9995   # the largest |lam| a fitted mode keeps
# A residue keeps its singular components above these fractions of its
# largest, tried in turn (a minimal realization's residues are rank 1; float32
# kernels leave small others that would only add modes).
RANK_TOLS = (1e-2, 1e-4, 1e-10)


@dataclass
class MimoFit:
    lam: np.ndarray    # (P,) complex
    B: np.ndarray      # (P, H_in) complex
    C: np.ndarray      # (H_out, P) complex
    D: np.ndarray      # (H_out, H_in) real
    rel_error: float   # relative L2 error of the realized kernel over the window
    order: int         # ERA model order tried last


def impulse(lam: np.ndarray, B: np.ndarray, C: np.ndarray, D: np.ndarray, L: int, gain: float = 2.0) -> np.ndarray:
    """The realization's kernel (H_out, H_in, L): gain Re(C lam^l B) (+ D at tap 0)."""
    powers = lam[None, :] ** np.arange(L)[:, None]          # (L, P)
    K = gain * np.einsum("op,lp,pi->oil", C, powers, B).real
    K[:, :, 0] += D
    return K


def _residue_fit(lam: np.ndarray, K: np.ndarray, rank_tol: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares residues for fixed modes (`lam`: one of each conjugate
    pair; the conjugates join the fit so that it is real), split into rank-1
    terms; folded: the modes of `lam` with 2 Re(C x), real modes' C halved."""
    n_up = len(lam)
    lam = np.concatenate([lam, np.conj(lam[lam.imag != 0])])
    H_out, H_in, L = K.shape
    V = lam[None, :] ** np.arange(1, L)[:, None]             # (L-1, n)
    R, *_ = np.linalg.lstsq(V, K[:, :, 1:].reshape(H_out * H_in, L - 1).T.astype(complex), rcond=None)
    R = R.reshape(len(lam), H_out, H_in)                     # K_l = sum_p R_p lam_p^l, l >= 1
    lams, Bs, Cs = [], [], []
    for p in range(n_up):  # the conjugates' residues are the conjugates of these (K is real)
        U, s, Vh = np.linalg.svd(R[p].real if lam[p].imag == 0 else R[p])
        keep = s > rank_tol * max(s.max(initial=0.0), 1e-300)
        half = 0.5 if lam[p].imag == 0 else 1.0
        for k in np.flatnonzero(keep):
            lams.append(lam[p])
            Cs.append(U[:, k] * s[k] * half)
            Bs.append(Vh[k])
    lam_f = np.array(lams, complex)
    B = np.array(Bs, complex).reshape(len(lams), H_in)
    C = np.array(Cs, complex).reshape(len(lams), H_out).T
    D = K[:, :, 0] - 2 * (C @ B).real
    return lam_f, B, C, D


def fit_mimo_kernel(K: np.ndarray, tol: float, max_modes: int) -> MimoFit:
    """The smallest stable realization (at most `max_modes` folded modes) whose
    kernel is within relative L2 error `tol` of K, else the best found."""
    K = np.asarray(K, np.float64)
    H_out, H_in, L = K.shape
    norm = max(float(np.linalg.norm(K)), 1e-300)
    if L < 3:  # no dynamics to identify: the zero-delay tap is D
        z = np.zeros(0, complex)
        return MimoFit(z, np.zeros((0, H_in), complex), np.zeros((H_out, 0), complex), K[:, :, 0].copy(),
                       float(np.linalg.norm(K[:, :, 1:]) / norm), 0)
    r = (L - 1) // 2                                         # block rows / columns of the Hankel matrices
    M = np.moveaxis(K[:, :, 1:], 2, 0)                       # M[k-1] = K_k = C~ A^(k-1) B
    H0 = np.block([[M[i + j] for j in range(r)] for i in range(r)])
    H1 = np.block([[M[i + j + 1] for j in range(r)] for i in range(r)])
    U, s, Vh = np.linalg.svd(H0, full_matrices=False)
    best: MimoFit | None = None
    for n in range(1, min(len(s), 2 * max_modes) + 1):
        if s[n - 1] <= 1e-14 * s[0]:
            break
        Sh = np.sqrt(s[:n])
        A = (U[:, :n].T @ H1 @ Vh[:n].T) / Sh[:, None] / Sh[None, :]
        lam = np.linalg.eigvals(A)
        lam = lam[(lam.imag >= 0) & (np.abs(lam) > 1e-12)]   # one of each conjugate pair; lam = 0 is tap 0 only
        mag = np.abs(lam)
        lam = np.where(mag >= MAX_RADIUS, lam / np.where(mag > 0, mag, 1) * MAX_RADIUS, lam)
        for rank_tol in RANK_TOLS:
            lam_f, B, C, D = _residue_fit(lam, K, rank_tol)
            if len(lam_f) > max_modes:
                break
            err = float(np.linalg.norm(impulse(lam_f, B, C, D, L) - K) / norm)
            if best is None or err < best.rel_error - 1e-15:
                best = MimoFit(lam_f, B, C, D, err, n)
            if err <= tol:
                return MimoFit(lam_f, B, C, D, err, n)
    return best if best is not None else MimoFit(np.zeros(0, complex), np.zeros((0, H_in), complex),
                                                 np.zeros((H_out, 0), complex), K[:, :, 0].copy(), 1.0, 0)
