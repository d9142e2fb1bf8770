"""The MIMO mode neuron's integer recurrence (docs/fixed_point.md, `qmimo`).

Per mode p, with the B synapses' exact sums r_p + i i_p of the input messages:

    x_p' = sat_state(round((a x_p) 2^-a_frac + (r_p + i i_p) 2^-b_shift_p))   (re and im)

the same update as the S4D neuron's (`qssm.next_state`, one round half up
of the exact sum), with the synapse sum in place of b u. The simulator
forms every step's drive `(r, i) 2^-b_shift + 1/2` for a whole sequence in
one BLAS call (B's rows [b_re; b_im] together) (exact: integer sums below 2^53 scaled by powers of two, the
argument of qssm.py), so the recurrence here is elementwise over modes:

- the numba kernel (numba installed, `S4DC_NO_JIT` unset): each mode's
  state in registers, time innermost, samples over threads;
- the numpy driver: whole (batch, P) arrays per step.

Both give the same integers (tests/test_mimo_quant.py checks both against
an independent Python-integer reference).
"""
from __future__ import annotations

import numpy as np

from s4dc.targets.loihi2 import qssm
from s4dc.targets.loihi2.qssm import AVAILABLE, next_state, numba, saturate


def run_modes(a_re: np.ndarray, a_im: np.ndarray, d: np.ndarray, x_re: np.ndarray, x_im: np.ndarray,
              lo: float, hi: float, jit: bool) -> int:
    """States over a sequence, in place. a: (P,) folded coefficients
    (a_int 2^-a_frac); d: (T, B, 2P) drives (input term plus the rounding's
    half; real parts, then imaginary parts), overwritten with the states
    [x_re | x_im] of every step, the layout the mode neurons send them in
    (one buffer in and out: half the memory traffic of separate arrays);
    x: (B, P) state, updated in place. Returns the count of saturated values."""
    if jit and AVAILABLE:
        fn = _kernel_parallel if qssm.PARALLEL and d.shape[1] > 1 else _kernel_serial
        return int(fn(a_re, a_im, d, x_re, x_im, lo, hi))
    return _modes_numpy(a_re, a_im, d, x_re, x_im, lo, hi)


def _modes_kernel(a_re, a_im, d, x_re, x_im, lo, hi):
    T, B, P2 = d.shape
    P = P2 // 2
    sat = 0
    for b in numba.prange(B):  # samples are independent
        xr = x_re[b].copy()
        xi = x_im[b].copy()
        nsat = 0
        for t in range(T):
            row = d[t, b]
            for p in range(P):  # independent modes: vectorizes
                nr, ni = next_state(a_re[p], a_im[p], xr[p], xi[p], row[p], row[P + p])
                sr = saturate(nr, lo, hi)
                si = saturate(ni, lo, hi)
                nsat += (sr != nr) + (si != ni)
                xr[p] = sr
                xi[p] = si
                row[p] = sr
                row[P + p] = si
        x_re[b] = xr
        x_im[b] = xi
        sat += nsat
    return sat


if AVAILABLE:
    _kernel_serial = numba.njit(**qssm._FLAGS)(_modes_kernel)
    _kernel_parallel = numba.njit(parallel=True, **qssm._FLAGS)(_modes_kernel)


def _modes_numpy(a_re, a_im, d, x_re, x_im, lo, hi) -> int:
    P = a_re.shape[0]
    xr, xi = x_re.copy(), x_im.copy()
    sat = 0
    for t in range(d.shape[0]):
        nr, ni = next_state(a_re, a_im, xr, xi, d[t, :, :P], d[t, :, P:])
        if qssm._outside(nr, lo, hi) or qssm._outside(ni, lo, hi):
            xr, xi = saturate(nr, lo, hi), saturate(ni, lo, hi)
            sat += np.count_nonzero(xr != nr) + np.count_nonzero(xi != ni)
        else:
            xr, xi = nr, ni
        d[t, :, :P], d[t, :, P:] = xr, xi
    x_re[:], x_im[:] = xr, xi
    return sat
