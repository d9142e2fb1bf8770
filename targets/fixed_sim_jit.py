"""Optional numba kernel for the S4D neuron's recurrence (`pip install numba`).

Same integers as the numpy path in fixed_sim.py (tests/test_fixed_sim.py
runs both against the integer reference): every value is an exact float64
integer, so the order of operations cannot change a result. The numpy path
stays the reference and runs when numba is absent or S4DC_NO_JIT=1.

The kernel keeps each state in registers and loops over time innermost, so a
layer's recurrence costs a few cycles per state and step instead of a trip
through memory per numpy call.
"""
from __future__ import annotations

import os

import numpy as np

try:
    if os.environ.get("S4DC_NO_JIT"):
        raise ImportError("disabled by S4DC_NO_JIT")
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

AVAILABLE = numba is not None


def _qssm_sequence(lr, li, br, bi, cr, ci, live, u, state_lim, msg_lim, x_re, x_im, out):
    """o-sum of one qssm layer over a whole sequence.

    lr, li, br, bi, cr, ci: (H, N) float64 coefficients with their shifts folded
    (powers of two), each channel's live states first, `live[h]` of them (the
    rest have b = c = 0 and stay 0); u: (T, B, H) input messages; x_re, x_im: (B, H, N) state,
    updated in place; out: (T, B, H), receives sum_n o_n. Returns the count of
    saturated values (states and per-state messages)."""
    T, B, H = u.shape
    lo_s, lo_m = -state_lim - 1.0, -msg_lim - 1.0
    sat = 0
    for b in numba.prange(B):  # samples are independent: one thread each
        obuf = np.empty(lr.shape[1])
        nsat = 0
        for h in range(H):
            xr = x_re[b, h].copy()
            xi = x_im[b, h].copy()
            a_r, a_i, b_r, b_i, c_r, c_i = lr[h], li[h], br[h], bi[h], cr[h], ci[h]
            N = live[h]
            for t in range(T):
                uu = u[t, b, h]
                for n in range(N):  # independent states, no float reduction: vectorizes
                    nr = np.floor((a_r[n] * xr[n] - a_i[n] * xi[n]) + b_r[n] * uu + 0.5)
                    ni = np.floor((a_r[n] * xi[n] + a_i[n] * xr[n]) + b_i[n] * uu + 0.5)
                    cr_ = min(max(nr, lo_s), state_lim)
                    ci_ = min(max(ni, lo_s), state_lim)
                    nsat += (cr_ != nr) + (ci_ != ni)
                    xr[n] = cr_
                    xi[n] = ci_
                    o = np.floor((c_r[n] * cr_ - c_i[n] * ci_) + 0.5)
                    oc = min(max(o, lo_m), msg_lim)
                    nsat += oc != o
                    obuf[n] = oc
                acc = 0.0
                for n in range(N):  # exact: integers below 2^53, any order
                    acc += obuf[n]
                out[t, b, h] = acc
            x_re[b, h] = xr
            x_im[b, h] = xi
        sat += nsat
    return sat


if AVAILABLE:
    _serial = numba.njit(cache=True, nogil=True, error_model="numpy")(_qssm_sequence)
    _parallel = numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)(_qssm_sequence)


# Worker processes (FixedSimulator.run(workers=N)) already split the batch:
# they clear this to run one thread each.
PARALLEL = True


def qssm_sequence(lr, li, br, bi, cr, ci, live, u, state_lim, msg_lim, x_re, x_im, out) -> int:
    """Dispatch: samples spread over threads for batches, one thread for a
    single sample (where starting threads costs more than it saves)."""
    fn = _parallel if PARALLEL and u.shape[1] > 1 else _serial
    return fn(lr, li, br, bi, cr, ci, live, u, state_lim, msg_lim, x_re, x_im, out)
