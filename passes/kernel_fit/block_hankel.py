"""Block-Hankel realization: a stable MIMO diagonal state space from a full
(not depthwise) causal convolution kernel, the SISO kernel fit generalized.

A kernel K (H_out, H_in, L) (tap 0 is the zero-delay one) is matched by

    K[:, :, 0] = 2 Re(C B) + D,   K[:, :, l] = 2 Re(C lam^l B)  (l >= 1),   C (H_out, P), B (P, H_in)

(the IR's folded `mimo`: x_t = lam x_{t-1} + B u_t, y_t = 2 Re(C x_t) + D u_t,
one mode per conjugate pair, a real mode with half its C). The
eigensystem realization algorithm (Ho-Kalman / ERA) takes the SVD
U S V^T of the block-Hankel matrix of the Markov parameters K[:, :, 1:], and
for each model order n from the singular values up gives a minimal balanced
(A, B~, C~) with K_l = C~ A^(l-1) B~ (l >= 1):

    A = S^-1/2 U^T H1 V S^-1/2,   B~ = S^1/2 V^T[:, :H_in],   C~ = U[:H_out] S^1/2

Diagonalized, A = W diag(lam) W^-1: B = W^-1 B~, C = C~ W lam^-1 (C reads
the state after the input of its own step, hence lam^-1), and D is what tap 0
leaves. The residues come from the realization itself, not from a least
squares fit of the kernel on fixed poles: that Vandermonde system is
numerically singular when poles cluster (condition 1e16 for 16 modes in
0.87..0.97), and its minimum-norm residues are not rank 1, so splitting them
would multiply the modes. An exact n-state kernel comes back with n states
(n_real + n_pairs folded modes).

Stability is part of the fit: a realization with a mode at |lam| >= 1 (a
kernel that has not decayed inside the window) would reproduce the window
and grow without bound past it, which is how Loihi 2 runs the recurrence.
A mode inside `STABLE_RADIUS` (the SISO fit's bound) is kept where the
realization puts it, however slowly it decays (an exact slow system comes
back exact). The unstable modes are pulled inside (radius `MAX_RADIUS`,
angle kept), they keep their B, and their C is corrected by least squares
on what the realization leaves of the kernel (linear in C, so a mode stays
one mode); an order that misses `tol` also tries that correction on every
mode's C. The reported error is that of the returned realization,
recomputed from it, on the balanced kernel (`fit_mimo_kernel`).
`fit_mimo_kernel` returns the smallest order that meets `tol`, or the best it
found (the caller refuses it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A realized mode at |lam| >= STABLE_RADIUS is unstable (or too close to 1
# to tell apart): fit_kernels' default bound for the SISO fit.
STABLE_RADIUS = 1.0 - 1e-7
# Where such a mode is pulled to: a response that dies out over a few
# thousand steps, not a near-integrator whose gain (1 / (1 - |lam|)) would
# swamp the state's range past the window.
MAX_RADIUS = 0.9995
# A mode at lam = 0 (a pure one-step delay: in K_l = C~ A^(l-1) B~ it feeds
# tap 1 only) cannot be held by the IR's form, whose state is read in the
# step it is written: it is dropped, and the recomputed error shows the loss.
MIN_RADIUS = 1e-12
# The largest zero-delay weight D a realization may need, over the kernel's
# largest tap. A one-step-delay tap (y_t += K_1 u_{t-1}) is not a mode of the
# IR's form, but the realization can imitate it with modes at |lam| near 0
# (C about K_1 / lam) and a D that cancels them at tap 0: exact in float64,
# useless in fixed point, where D's 8 bits (range 2^7) would leave the whole
# kernel below one weight step. Such a candidate is not accepted.
MAX_D_GAIN = 2.0 ** 7
# The largest block-Hankel matrix the fit builds (bytes of float64): beyond
# it the SVD takes minutes to hours (a 64 x 64 x 784 kernel with every block
# row would be a 25k x 25k matrix, 5 GB); at this cap it is 2.9k x 2.9k.
HANKEL_MAX_BYTES = 64 << 20


@dataclass
class MimoFit:
    lam: np.ndarray    # (P,) complex
    B: np.ndarray      # (P, H_in) complex
    C: np.ndarray      # (H_out, P) complex
    D: np.ndarray      # (H_out, H_in) real
    rel_error: float   # relative L2 error of the realized kernel over the window, balanced (fit_mimo_kernel)
    order: int         # ERA model order tried last
    delay_gain: float = 0.0   # the smallest D gain of the rejected fits within tol (0: none rejected)
    zero_modes: bool = False  # some order's realization had a mode at lambda = 0 (dropped)


def impulse(lam: np.ndarray, B: np.ndarray, C: np.ndarray, D: np.ndarray, L: int, gain: float = 2.0) -> np.ndarray:
    """The realization's kernel (H_out, H_in, L): gain Re(C lam^l B) (+ D at tap 0)."""
    return np.moveaxis(_taps(lam, B, C, D, L, gain), 0, 2)


def _taps(lam: np.ndarray, B: np.ndarray, C: np.ndarray, D: np.ndarray, L: int, gain: float = 2.0) -> np.ndarray:
    """`impulse` tap-major, (L, H_out, H_in), contiguous: the fit compares
    every order's kernel in this layout (strided arithmetic on the kernel's
    own layout cost more than the products)."""
    H_out, P = C.shape
    powers = lam[None, :] ** np.arange(L)[:, None]          # (L, P)
    # Re(C lam^l B) of every tap as one real GEMM, rows (l, o):
    # [Re, Im](C lam^l) @ [Re B; -Im B] (a three-operand einsum here looped
    # in C and took most of a 64 x 64 x 784 fit's time)
    X = (C[None] * powers[:, None, :]).reshape(L * H_out, P)
    T = (np.concatenate([X.real, X.imag], axis=1) @ np.concatenate([B.real, -B.imag])).reshape(L, H_out, -1)
    T *= gain
    T[0] += D
    return T


def delay_reason(fit: MimoFit) -> str:
    """Why a refused fit cannot be helped by more modes, or '' (MIN_RADIUS, MAX_D_GAIN)."""
    if fit.delay_gain:
        why = (f"the fits within tolerance need a zero-delay weight {fit.delay_gain:.3g} times the kernel's "
               "largest tap, cancelling modes at |lambda| near 0")
    elif fit.zero_modes:
        why = "its realization has modes at lambda = 0"
    else:
        return ""
    return why + ": a pure delay, which this state space cannot hold"


def _modal(G: np.ndarray, U: np.ndarray, s: np.ndarray, Vh: np.ndarray, n: int, H_out: int, H_in: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The order-n ERA realization, diagonalized and folded: (lam, B, C), one
    mode of each conjugate pair (upper half plane) and every real mode (C
    halved); and whether a mode at lambda = 0 was dropped (MIN_RADIUS)."""
    Sh = np.sqrt(s[:n])
    A = G[:n, :n] / Sh[:, None] / Sh[None, :]
    Bt = Sh[:, None] * Vh[:n, :H_in]
    Ct = U[:H_out, :n] * Sh[None, :]
    # A is real, so LAPACK returns real eigenvalues with imag exactly 0 and
    # conjugate pairs (with conjugate eigenvectors) exactly conjugate
    lam, W = np.linalg.eig(A)
    zero = np.abs(lam) <= MIN_RADIUS
    keep = (lam.imag >= 0) & ~zero
    B = np.linalg.solve(W, Bt.astype(complex))[keep]
    C = (Ct @ W).astype(complex)[:, keep] / lam[keep]   # eig of a real A with real poles is real
    lam = lam[keep].astype(complex)
    real = lam.imag == 0
    # a real mode's eigenvector (so its B and C) is real up to rounding; 2 Re(C x) counts it once
    B[real], C[:, real] = B[real].real, 0.5 * C[:, real].real
    return lam, B, C, bool(zero.any())


def _refit_C(lam: np.ndarray, B: np.ndarray, C: np.ndarray, T: np.ndarray, which: np.ndarray) -> np.ndarray:
    """C with the columns `which` corrected by least squares on the taps l >= 1
    of the tap-major kernel T (L, H_out, H_in) (2 Re(sum_which dC lam^l B) =
    what C leaves of K_l): linear in C with lam and B fixed, so each mode
    stays one rank-1 mode; the minimum-norm correction keeps C near the
    realization's where the taps cannot tell."""
    L, H_out, H_in = T.shape
    if not which.any():
        return C
    rest = T - _taps(lam, B, C, np.zeros((H_out, H_in)), L)
    m = int(which.sum())
    g = (lam[which][None, :, None] ** np.arange(1, L)[:, None, None]) * B[which][None]   # (L-1, m, H_in)
    g = g.transpose(0, 2, 1).reshape(-1, m)                                              # rows (l, i)
    X = 2 * np.concatenate([g.real, -g.imag], axis=1)                                    # [Re dc, Im dc]
    y = rest[1:].transpose(0, 2, 1).reshape(-1, H_out)                                   # rows (l, i), o
    sol, *_ = np.linalg.lstsq(X, y, rcond=None)
    dC = (sol[:m] + 1j * sol[m:]).T
    dC[:, lam[which].imag == 0] = dC[:, lam[which].imag == 0].real   # a real mode's C stays real
    C = C.copy()
    C[:, which] += dC
    return C


def block_rows(H_out: int, H_in: int, L: int, max_modes: int) -> int:
    """Block rows (and columns) of the Hankel matrices: as many as the
    window holds (more rows average more of the kernel: a slowly decaying
    kernel is identified better than with the fewest rows its order needs),
    but no more than HANKEL_MAX_BYTES allows. The rank, so the highest order
    identifiable, is rows * min(H_in, H_out); where the memory cap leaves
    fewer than the 2 max_modes states asked for, the orders beyond are out of
    reach and the caller refuses a kernel they would have been needed for."""
    fits = int(np.sqrt(HANKEL_MAX_BYTES / (8 * H_out * H_in)))
    return max(1, min((L - 1) // 2, fits))


def balance(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The norms (H_out,), (H_in,) that balance K (H_out, H_in, L): each output
    row divided by its norm, then each input column by its (1 where zero)."""
    rows = np.linalg.norm(K, axis=(1, 2))
    rows = np.where(rows > 0, rows, 1.0)
    cols = np.linalg.norm(K / rows[:, None, None], axis=(0, 2))
    return rows, np.where(cols > 0, cols, 1.0)


def fit_mimo_kernel(K: np.ndarray, tol: float, max_modes: int) -> MimoFit:
    """The smallest stable realization (at most `max_modes` folded modes) whose
    kernel is within relative L2 error `tol` of K balanced (each output row,
    then each input column, scaled to unit norm), else the best found.

    Balanced, a weak output or input weighs as much as a strong one: against
    the whole kernel's norm, an output 1e-4 of the others could be dropped
    entirely inside the tolerance. The realization of the balanced kernel is
    scaled back (C by the rows' norms, B by the columns'), which leaves its
    modes and its error as they are."""
    K = np.asarray(K, np.float64)
    rows, cols = balance(K)
    fit = _fit_balanced(K / rows[:, None, None] / cols[None, :, None], tol, max_modes)
    fit.B, fit.C, fit.D = fit.B * cols[None, :], rows[:, None] * fit.C, rows[:, None] * fit.D * cols[None, :]
    return fit


def _fit_balanced(K: np.ndarray, tol: float, max_modes: int) -> MimoFit:
    H_out, H_in, L = K.shape
    norm = max(float(np.linalg.norm(K)), 1e-300)
    empty = (np.zeros(0, complex), np.zeros((0, H_in), complex), np.zeros((H_out, 0), complex))
    if L < 3:  # no dynamics to identify: the zero-delay tap is D
        return MimoFit(*empty, K[:, :, 0].copy(), float(np.linalg.norm(K[:, :, 1:]) / norm), 0)
    r = block_rows(H_out, H_in, L, max_modes)
    T = np.ascontiguousarray(np.moveaxis(K, 2, 0))           # tap-major: T[k] = K_k
    M = T[1:]                                                # M[k-1] = K_k = C~ A^(k-1) B~
    H0 = np.block([[M[i + j] for j in range(r)] for i in range(r)])
    H1 = np.block([[M[i + j + 1] for j in range(r)] for i in range(r)])
    U, s, Vh = np.linalg.svd(H0, full_matrices=False)
    n_max = min(len(s), 2 * max_modes)
    G = U[:, :n_max].T @ H1 @ Vh[:n_max].T                   # every order's A is a corner of it
    best = MimoFit(*empty, K[:, :, 0].copy(), float(np.linalg.norm(K[:, :, 1:]) / norm), 0)
    kmax = max(float(np.abs(K).max()), 1e-300)
    delay_gain, zero_modes = np.inf, False
    for n in range(1, n_max + 1):
        if s[n - 1] <= 1e-14 * s[0]:
            break
        lam, B, C, dropped = _modal(G, U, s, Vh, n, H_out, H_in)
        zero_modes |= dropped
        if len(lam) > max_modes:
            continue   # a higher order may fold to fewer modes (more of its poles in pairs)
        mag = np.abs(lam)
        moved = mag >= STABLE_RADIUS
        lam = np.where(moved, lam / np.where(mag > 0, mag, 1) * MAX_RADIUS, lam)
        C = _refit_C(lam, B, C, T, moved)
        for attempt in range(2):
            if attempt:  # missed: the best C for these modes
                C = _refit_C(lam, B, C, T, np.ones(len(lam), bool))
            D = K[:, :, 0] - 2 * (C @ B).real   # tap 0 is C B + D: D is what the modes leave of it
            err = float(np.linalg.norm(_taps(lam, B, C, D, L) - T) / norm)
            if (gain := float(np.abs(D).max()) / kmax) > MAX_D_GAIN:
                if err <= tol:
                    delay_gain = min(delay_gain, gain)
                continue
            if err < best.rel_error - 1e-15:
                best = MimoFit(lam, B, C, D, err, n)
            if err <= tol:
                return best
    if np.isfinite(delay_gain):
        best.delay_gain = delay_gain
    best.zero_modes = zero_modes
    return best
