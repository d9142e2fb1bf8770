"""The Hankel signal subspace of a batch of kernels (sketched by FFT) and
ESPRIT poles from it."""
from __future__ import annotations

import numpy as np

_SEED = 20240917          # fixed seed of the Gaussian sketch


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


def _orders_from_sv(S: np.ndarray, tol: float, n_max: int) -> np.ndarray:
    """Initial model order per channel: the singular values above tol/3."""
    sr = S / np.maximum(S[:, :1], 1e-300)
    n0 = (sr > 0.3 * tol).sum(axis=1)
    return np.clip(n0, 1, max(1, min(n_max, S.shape[1] - 1)))
