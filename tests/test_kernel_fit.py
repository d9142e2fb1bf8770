"""Tests for s4dc.passes.kernel_fit: stable diagonal realizations of kernels.

The kernels are stock S4D-Lin kernels (Gu et al. 2022, ZOH, B = 1): per
channel dt = exp(U[log dt_min, log dt_max]), A_n = -0.5 + i pi n,
C_n complex normal, K[l] = 2 Re(sum_n C_n (exp(dt A_n) - 1) / A_n exp(dt A_n l)).
Everything the fit returns is checked independently here: the kernel is
rebuilt from the poles and residues, and the recurrence is streamed well
past the window.
"""
from __future__ import annotations

import numpy as np
import pytest

from s4dc.passes.kernel_fit import KernelFit, fit_kernels

TOL = 1e-5


def s4d_lin(H, N, L, dt_min=1e-3, dt_max=1e-1, seed=0, dtype=np.float32):
    """Stock S4D-Lin kernels (H, L) and the true folded poles/residues (H, N/2)."""
    rng = np.random.default_rng(seed)
    dt = np.exp(rng.uniform(np.log(dt_min), np.log(dt_max), H))[:, None]
    A = -0.5 + 1j * np.pi * np.arange(N // 2)[None]
    C = (rng.standard_normal((H, N // 2)) + 1j * rng.standard_normal((H, N // 2))) / np.sqrt(2)
    dtA = dt * A
    res = C * (np.exp(dtA) - 1) / A
    poles = np.exp(dtA)
    k = 2 * np.real(np.einsum("hn,hnl->hl", res, poles[:, :, None] ** np.arange(L)))
    return k.astype(dtype), poles, res


def rebuild(poles, residues, L):
    """k_hat[h, l] = 2 Re(sum_m r p^l), computed directly (not with the module's helpers)."""
    l = np.arange(L)
    return 2 * np.real(np.einsum("hm,hml->hl", residues, poles[:, :, None] ** l[None, None, :]))


def stream_step(poles, residues, T):
    """Unit-step response of the folded recurrence x_t = p x_{t-1} + u_t, y_t = 2 Re(sum r x_t)."""
    x = np.zeros(poles.shape, complex)
    y = np.empty((poles.shape[0], T))
    for t in range(T):
        x = poles * x + 1.0
        y[:, t] = 2 * np.real((residues * x).sum(axis=1))
    return y


def check_fit(fit: KernelFit, kernels, max_radius=1.0 - 1e-7):
    """The invariants every fit must satisfy; returns the independently rebuilt error."""
    H, L = kernels.shape
    M = fit.poles.shape[1]
    assert fit.poles.shape == (H, M) and fit.residues.shape == (H, M) and fit.rel_error.shape == (H,)
    assert fit.poles.dtype == np.complex128 and fit.residues.dtype == np.complex128
    assert fit.rel_error.dtype == np.float64
    assert np.all(np.isfinite(fit.poles)) and np.all(np.isfinite(fit.residues))
    # stability is mandatory, and one pole per conjugate pair (Im >= 0)
    assert np.all(np.abs(fit.poles) <= max_radius) and np.all(np.abs(fit.poles) < 1.0)
    assert np.all(fit.poles.imag >= 0)
    # padding modes are exactly zero
    pad = fit.poles == 0
    assert np.all(fit.residues[pad] == 0)
    # the reported error is the error of the returned realization
    k = kernels.astype(np.float64)
    nk = np.linalg.norm(k, axis=1)
    err = np.where(nk > 0, np.linalg.norm(k - rebuild(fit.poles, fit.residues, L), axis=1) / np.where(nk > 0, nk, 1), 0.0)
    assert np.allclose(err, fit.rel_error, rtol=1e-3, atol=1e-9)
    return err


# -------------------------------------------------------------------------- accuracy

@pytest.mark.parametrize("L,dt_min,dt_max,dtype", [
    (1024, 1e-3, 1e-1, np.float32),    # stock range: a third of the channels do not decay in the window
    (1024, 1e-3, 1e-1, np.float64),
    (256, 1e-3, 1e-1, np.float32),
    (256, 1e-3, 4e-3, np.float32),     # no channel decays inside the window
    (64, 1e-3, 1e-1, np.float32),      # the window is shorter than the model order
    (64, 1e-3, 1.1e-3, np.float32),    # dt = 0.001: |p| = exp(-0.0005), kernels barely decay
    (64, 1e-3, 1.1e-3, np.float64),
])
def test_stock_kernels_fit_to_tolerance_with_stable_poles(L, dt_min, dt_max, dtype):
    k, _, _ = s4d_lin(24, 64, L, dt_min, dt_max, seed=L, dtype=dtype)
    fit = fit_kernels(k, tol=TOL)
    err = check_fit(fit, k)
    assert err.max() <= TOL
    assert fit.n_modes <= 64


@pytest.mark.parametrize("L,dt_min,dt_max", [
    (1024, 1e-2, 1e-1),    # decays inside the window: the fit is the system
    (1024, 1e-3, 1e-1),
    (256, 1e-3, 4e-3),
    (64, 1e-3, 1.1e-3),
])
def test_streaming_past_the_window_stays_bounded(L, dt_min, dt_max):
    k, p_true, r_true = s4d_lin(16, 64, L, dt_min, dt_max, seed=7)
    fit = fit_kernels(k, tol=TOL)
    check_fit(fit, k)
    y = stream_step(fit.poles, fit.residues, 4 * L)
    y_true = stream_step(p_true, r_true, 4 * L)
    assert np.all(np.isfinite(y))
    first = np.abs(y[:, :L]).max(axis=1)
    # inside the window the realization follows the kernel
    assert np.allclose(y[:, :L], y_true[:, :L], atol=1e-3 * np.abs(y_true[:, :L]).max())
    # past it: no growth of the kind an unstable mode gives (1.01**3000 = 1e13);
    # where the kernels have decayed the response settles, where they have not the
    # continuation is not determined by the window, but it stays of the kernel's scale
    if dt_min * L >= 10:
        assert np.all(np.abs(y).max(axis=1) <= 1.5 * first)
        assert np.allclose(y, y_true, atol=1e-3 * np.abs(y_true).max())
    else:
        assert np.all(np.abs(y).max(axis=1) <= 100 * np.maximum(first, np.abs(y_true).max(axis=1)))
    # long after the window the recurrence has decayed: 40 L steps, geometric bound
    assert np.all(np.abs(fit.poles) ** (40 * L) < 1.0)


def test_unconstrained_fit_would_be_unstable_here():
    """The regime the stability constraint exists for: a plain ESPRIT fit of these
    kernels (non-decaying, float32) puts poles outside the unit circle."""
    from s4dc.passes.kernel_fit.fit import _single_thread
    from s4dc.passes.kernel_fit.subspace import _esprit, _subspace

    k, _, _ = s4d_lin(8, 64, 1024, 1.2e-3, 3e-3, seed=3)
    kn = k.astype(np.float64) / np.linalg.norm(k, axis=1, keepdims=True)
    with _single_thread():
        U, _ = _subspace(kn, 72, 1, {})
        ev = _esprit(U, 63)
    assert np.abs(ev).max() > 1.0 + 1e-4
    fit = fit_kernels(k, tol=TOL)
    check_fit(fit, k)
    assert fit.rel_error.max() <= TOL


# -------------------------------------------------------------------------- model order

@pytest.mark.parametrize("N,dtype", [(64, np.float32), (64, np.float64), (16, np.float64)])
def test_automatic_order_is_the_true_order(N, dtype):
    # dt in [0.006, 0.03]: kernels decay inside L = 1024 and no mode aliases
    # (31 pi dt < pi), so the minimal realization is N/2 - 1 conjugate pairs plus
    # the real mode n = 0 (A_imag = 0): N/2 folded modes
    k, _, _ = s4d_lin(32, N, 1024, 6e-3, 3e-2, seed=11, dtype=dtype)
    fit = fit_kernels(k, tol=TOL)
    check_fit(fit, k)
    assert fit.n_modes == N // 2
    assert fit.rel_error.max() <= TOL
    # every channel: one real pole, N/2 - 1 pairs, no padding
    assert np.all((fit.poles.imag == 0).sum(axis=1) == 1)
    assert np.all(fit.poles != 0)


def test_recovered_poles_match_the_true_ones():
    k, p_true, _ = s4d_lin(8, 64, 1024, 8e-3, 2e-2, seed=5, dtype=np.float64)
    fit = fit_kernels(k, tol=TOL)
    for h in range(8):
        d = np.abs(fit.poles[h][:, None] - p_true[h][None, :]).min(axis=1)
        assert d.max() < 1e-6


def test_n_modes_override():
    k, _, _ = s4d_lin(12, 64, 256, 1e-2, 1e-1, seed=2)
    fit = fit_kernels(k, n_modes=40)
    check_fit(fit, k)
    assert fit.n_modes == 40
    assert fit.rel_error.max() <= TOL
    # fewer modes than the system has: still stable, error reported honestly
    few = fit_kernels(k, n_modes=8)
    err = check_fit(few, k)
    assert few.n_modes == 8
    assert err.max() > TOL
    # max_modes too small: best fit at max_modes, error above tol (the caller raises)
    capped = fit_kernels(k, max_modes=8)
    check_fit(capped, k)
    assert capped.n_modes <= 8 and capped.rel_error.max() > TOL


def test_max_radius_is_respected():
    k, _, _ = s4d_lin(8, 64, 256, 1e-3, 3e-3, seed=9)
    fit = fit_kernels(k, max_radius=0.999)
    check_fit(fit, k, max_radius=0.999)


# -------------------------------------------------------------------------- odd kernels

def test_zero_fir_and_noise_kernels():
    rng = np.random.default_rng(0)
    L = 256
    k = np.zeros((6, L))
    k[1] = 0.5 ** np.arange(L)            # one real pole, 0.5
    k[2, :3] = [1.0, 0.5, 0.25]           # FIR with three taps
    k[3, 7] = 1.0                         # a pure delay
    k[4, :10] = rng.standard_normal(10)   # random FIR
    k[5] = rng.standard_normal(L)         # noise
    fit = fit_kernels(k)
    err = check_fit(fit, k)
    assert fit.rel_error[0] == 0.0 and np.all(fit.residues[0] == 0)
    assert err[1] <= TOL
    used = (fit.poles[1] != 0).sum()
    assert used == 1 and np.isclose(fit.poles[1][fit.poles[1] != 0][0], 0.5)
    # FIR kernels need near-zero poles with huge, cancelling residues; residues are
    # kept within 1e6 x ||k||, and the (approximate) fit's error is what is reported
    assert np.all(np.abs(fit.residues) <= 1e6 * np.linalg.norm(k, axis=1, keepdims=True) + 1e-12)
    assert err[5] > 0.1                   # noise: large error, reported
    y = stream_step(fit.poles, fit.residues, 4 * L)
    assert np.all(np.isfinite(y))


def test_noise_kernels_long_window():
    rng = np.random.default_rng(1)
    k = rng.standard_normal((2, 1024)).astype(np.float32)
    fit = fit_kernels(k)
    err = check_fit(fit, k)
    assert np.all(err > 0.1) and fit.n_modes <= 64


def test_short_kernels():
    rng = np.random.default_rng(2)
    for L in (1, 2, 3, 8):
        k = rng.standard_normal((3, L))
        fit = fit_kernels(k)
        err = check_fit(fit, k)
        assert err.max() <= TOL
    empty = fit_kernels(np.zeros((0, 16)))
    assert empty.poles.shape[0] == 0


# -------------------------------------------------------------------------- determinism, API

def test_deterministic_and_independent_of_n_jobs():
    k, _, _ = s4d_lin(70, 64, 256, 1e-3, 1e-1, seed=4)
    a = fit_kernels(k)
    b = fit_kernels(k)
    c = fit_kernels(k, n_jobs=2)
    for name in ("poles", "residues", "rel_error"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert np.array_equal(getattr(a, name), getattr(c, name))


def test_scale_invariance():
    k, _, _ = s4d_lin(6, 64, 256, 1e-2, 1e-1, seed=8, dtype=np.float64)
    a = fit_kernels(k)
    b = fit_kernels(k * 1e-12)
    assert np.allclose(a.rel_error, b.rel_error, atol=1e-9)
    assert a.n_modes == b.n_modes


def test_bad_input():
    with pytest.raises(ValueError):
        fit_kernels(np.ones((2, 3, 4)))
    with pytest.raises(ValueError):
        fit_kernels(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError):
        fit_kernels(np.ones((2, 4)) + 0j)
    with pytest.raises(ValueError):
        fit_kernels(np.ones((2, 4)), max_radius=1.0)
    with pytest.raises(ValueError):
        fit_kernels(np.ones((2, 4)), tol=0.0)
