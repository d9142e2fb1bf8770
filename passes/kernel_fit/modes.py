"""Pole sets and the kernels they generate: powers, the real design matrix
of a conjugate-closed set, folding coefficients into residues, and keeping
poles inside the disk."""
from __future__ import annotations

import numpy as np


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
