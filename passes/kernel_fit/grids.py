"""Fallback pole sets: damped Fourier-extension grids over the kernel's band
and the exact stable interpolation of short kernels."""
from __future__ import annotations

import numpy as np
from s4dc.passes.kernel_fit.modes import _conj_closed


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
