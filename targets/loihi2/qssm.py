"""The S4D neuron's integer recurrence (docs/fixed_point.md, `qssm`), written once.

Per complex state, with input message u:

    x' = sat_state(round((a x) 2^-a_frac + b u 2^-b_shift))      (re and im)
    o  = sat_msg(round((c_re x'_re - c_im x'_im) 2^-c_shift))      round = floor(. + 1/2)

Everything here is float64 holding exact integers, with each shift folded
into its coefficient (`fold`: scaling by a power of two is exact):

- a x: a 16-bit coefficient times a 24-bit state is a 40-bit integer times
  2^-a_frac, the sum of two such 41 bits: exact.
- b u: at most 16 + 24 = 40 significant bits times 2^-b_shift: exact.
- their sum is a multiple of 2^-k, k = max(a_frac, b_shift) <= 26
  (`numerics.MAX_EXACT_B_SHIFT`, the IR's bound; a_frac <= 15), and below 2^25
  in magnitude wherever the state does not saturate, so it needs at most
  51 bits: exact, and one floor rounds it. Where the float sum is not
  exact, its magnitude is far beyond the state's rails; rounding to nearest
  is monotone, so it saturates to the same rail as the exact sum.
- c x': two 40-bit products times 2^-c_shift, their difference 41 bits: exact;
  plus 1/2 exact too (at most 42 bits from 2^-c_shift up, for c_shift >= 0;
  for c_shift < 0 an integer, exact below 2^52, far past the message rails).

So float64 gives the integers of an int64 implementation (tests/test_fixed_sim.py
checks against one; tests/test_lava.py checks the Lava model, which calls
these same helpers), and the drivers may order the exact operations as suits
them.

The elementwise helpers (`input_drive`, `next_state`, `state_message`,
`saturate`) use only arithmetic, np.floor and np.minimum/np.maximum, so one
source serves numpy arrays (the numpy driver, Lava's neuron model) and
scalars inside numba's loops. Two whole-sequence drivers call them:

- the numba kernel (`numba` installed and `S4DC_NO_JIT` unset): each state
  in registers, time innermost, each channel's live states first;
- the numpy driver otherwise: a block of time steps at a time, whole
  (batch, H, N) arrays per step.

`run_sequence` picks one; `FixedSimulator.step` is the same call with T = 1
and the state carried between calls.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from s4dc.targets.loihi2.numerics import qmax

try:
    if os.environ.get("S4DC_NO_JIT"):
        raise ImportError("disabled by S4DC_NO_JIT")
    import numba
    from numba.extending import register_jitable as _jitable
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

    def _jitable(fn):
        return fn

AVAILABLE = numba is not None  # the numba kernel can run
TBLOCK = 4  # time steps per block in the numpy driver

# Worker processes (FixedSimulator.run(workers=N)) already split the batch:
# they clear this to run the kernel on one thread each.
PARALLEL = True


# --- the elementwise step: one source for numpy arrays and numba scalars ----------
@_jitable
def input_drive(b_re, b_im, u):
    """The input's term of the state update: b u 2^-b_shift (shift folded
    into b) plus the rounding's half, added here so that a driver can form
    it for a block of steps at once. Exact wherever the state does not
    saturate (|b u| < 2^25 there, a multiple of 2^-b_shift)."""
    return b_re * u + 0.5, b_im * u + 0.5


@_jitable
def next_state(a_re, a_im, x_re, x_im, d_re, d_im):
    """The state update before saturation: floor(a x + b u + 1/2), one
    round half up of the exact sum (d: `input_drive`'s term)."""
    return (np.floor((a_re * x_re - a_im * x_im) + d_re),
            np.floor((a_re * x_im + a_im * x_re) + d_im))


@_jitable
def state_message(c_re, c_im, x_re, x_im):
    """The per-state output message before saturation: round(Re(c x))."""
    return np.floor((c_re * x_re - c_im * x_im) + 0.5)


@_jitable
def saturate(v, lo, hi):
    """Clip to [lo, hi] (the rails of a register: Loihi saturates, it does not wrap)."""
    return np.minimum(np.maximum(v, lo), hi)


# --- coefficients --------------------------------------------------------------
@dataclass(frozen=True)
class Folded:
    """Integer coefficients as float64 with their shifts folded in:
    a = a_int 2^-a_frac, b = b_int 2^-b_shift, c = c_int 2^-c_shift (exact),
    and the rails of the state and message registers."""

    a_re: np.ndarray
    a_im: np.ndarray
    b_re: np.ndarray
    b_im: np.ndarray
    c_re: np.ndarray
    c_im: np.ndarray
    state_lo: float
    state_hi: float
    msg_lo: float
    msg_hi: float


def fold(a_re: np.ndarray, a_im: np.ndarray, b_re: np.ndarray, b_im: np.ndarray, c_re: np.ndarray,
         c_im: np.ndarray, b_shift: np.ndarray, c_shift: np.ndarray, a_frac: int, state_bits: int,
         message_bits: int) -> Folded:
    """`Folded` coefficients from a qssm layer's (or a Lava neuron's) integers."""
    f64 = lambda v: np.asarray(v, np.float64)  # noqa: E731
    sa, sb, sc = 2.0 ** -float(a_frac), 2.0 ** -f64(b_shift), 2.0 ** -f64(c_shift)
    s, m = float(qmax(state_bits)), float(qmax(message_bits))
    return Folded(f64(a_re) * sa, f64(a_im) * sa, f64(b_re) * sb, f64(b_im) * sb, f64(c_re) * sc, f64(c_im) * sc,
                  -s - 1.0, s, -m - 1.0, m)


@dataclass(frozen=True)
class Channels:
    """A qssm layer's coefficients as (H, N) arrays, each channel's live
    states (b or c nonzero) first: the others stay exactly 0 and send 0, so
    the drivers skip them. `live[h]` counts channel h's live states."""

    k: Folded
    live: np.ndarray  # (H,) int64
    order: np.ndarray  # (H, N): the layer's state index of each column

    @property
    def shape(self) -> tuple[int, int]:
        return self.k.a_re.shape


def channels(layer_params: dict[str, np.ndarray], a_frac: int, state_bits: int, message_bits: int) -> Channels:
    """`Channels` of a qssm layer (params a_re ... c_shift, (H, N) each)."""
    p = layer_params
    k = fold(p["a_re"], p["a_im"], p["b_re"], p["b_im"], p["c_re"], p["c_im"], p["b_shift"], p["c_shift"],
             a_frac, state_bits, message_bits)
    live = (k.b_re != 0) | (k.b_im != 0) | (k.c_re != 0) | (k.c_im != 0)
    order = np.argsort(~live, axis=1, kind="stable")
    take = lambda v: np.ascontiguousarray(np.take_along_axis(v, order, axis=1))  # noqa: E731
    k = Folded(*(take(v) for v in (k.a_re, k.a_im, k.b_re, k.b_im, k.c_re, k.c_im)),
               k.state_lo, k.state_hi, k.msg_lo, k.msg_hi)
    return Channels(k, live.sum(axis=1).astype(np.int64), order)


def zero_state(ch: Channels, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(x_re, x_im), each (batch, H, N), in `ch`'s state order."""
    return np.zeros((batch,) + ch.shape), np.zeros((batch,) + ch.shape)


# --- one neuron step on arrays (Lava's model) -------------------------------------
def neuron_step(k: Folded, u: np.ndarray, x_re: np.ndarray, x_im: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One step of neurons with elementwise coefficients `k` and inputs `u`
    (all float64 integers, broadcast together): (x_re', x_im', messages,
    saturated count)."""
    d_re, d_im = input_drive(k.b_re, k.b_im, u)
    nr, ni = next_state(k.a_re, k.a_im, x_re, x_im, d_re, d_im)
    xr, xi = saturate(nr, k.state_lo, k.state_hi), saturate(ni, k.state_lo, k.state_hi)
    o = state_message(k.c_re, k.c_im, xr, xi)
    oc = saturate(o, k.msg_lo, k.msg_hi)
    n = np.count_nonzero(xr != nr) + np.count_nonzero(xi != ni) + np.count_nonzero(oc != o)
    return xr, xi, oc, int(n)


# --- whole sequences -------------------------------------------------------------
def run_sequence(ch: Channels, u: np.ndarray, x_re: np.ndarray, x_im: np.ndarray, jit: bool) -> tuple[np.ndarray, int]:
    """Run a qssm layer's neurons over a sequence.

    u: (T, B, H) input messages (time-major float64 integers); x_re, x_im:
    (B, H, N) state in `ch`'s order, updated in place. Returns (o_sum, sat):
    o_sum (T, B, H), each channel's sum of its states' saturated messages,
    and the count of saturated values (states and messages)."""
    out = np.empty(u.shape)
    u = np.ascontiguousarray(u, np.float64)
    if jit and AVAILABLE:
        k = ch.k
        # Samples spread over threads for batches, one thread for a single
        # sample (where starting threads costs more than it saves).
        fn = _kernel_parallel if PARALLEL and u.shape[1] > 1 else _kernel_serial
        sat = fn(k.a_re, k.a_im, k.b_re, k.b_im, k.c_re, k.c_im, ch.live, u,
                 k.state_lo, k.state_hi, k.msg_lo, k.msg_hi, x_re, x_im, out)
    else:
        sat = _sequence_numpy(ch, u, x_re, x_im, out)
    return out, int(sat)


def _sequence_kernel(a_re, a_im, b_re, b_im, c_re, c_im, live, u, s_lo, s_hi, m_lo, m_hi, x_re, x_im, out):
    """numba: each sample on its own thread, each state in registers, time
    innermost (a few cycles per state and step instead of a trip through
    memory per numpy call)."""
    T, B, H = u.shape
    sat = 0
    for b in numba.prange(B):  # samples are independent
        obuf = np.empty(a_re.shape[1])
        nsat = 0
        for h in range(H):
            xr = x_re[b, h].copy()
            xi = x_im[b, h].copy()
            ar, ai, br, bi, cr, ci = a_re[h], a_im[h], b_re[h], b_im[h], c_re[h], c_im[h]
            N = live[h]
            for t in range(T):
                uu = u[t, b, h]
                for n in range(N):  # independent states, no float reduction: vectorizes
                    dr, di = input_drive(br[n], bi[n], uu)
                    nr, ni = next_state(ar[n], ai[n], xr[n], xi[n], dr, di)
                    sr = saturate(nr, s_lo, s_hi)
                    si = saturate(ni, s_lo, s_hi)
                    nsat += (sr != nr) + (si != ni)
                    xr[n] = sr
                    xi[n] = si
                    o = state_message(cr[n], ci[n], sr, si)
                    oc = saturate(o, m_lo, m_hi)
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
    # fastmath only as "no NaN, no Inf" (true of every value here): np.minimum
    # and np.maximum then compile to plain selects instead of NaN-checking
    # branches (2x on the kernel). No reassociation and no FMA contraction,
    # which could change a rounding.
    _FLAGS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"nnan", "ninf"})
    _kernel_serial = numba.njit(**_FLAGS)(_sequence_kernel)
    _kernel_parallel = numba.njit(parallel=True, **_FLAGS)(_sequence_kernel)


def _sequence_numpy(ch: Channels, u: np.ndarray, x_re: np.ndarray, x_im: np.ndarray, out: np.ndarray) -> int:
    """numpy: whole (B, H, n) arrays per step, n = the most live states of
    any channel (the columns after it are dead everywhere). Optimistic: a
    block of TBLOCK steps runs without clipping and is checked once; a block
    where some state leaves its rails is redone step by step with saturation."""
    k = ch.k
    n = int(ch.live.max(initial=0))
    ar, ai, br, bi, cr, ci = (v[:, :n] for v in (k.a_re, k.a_im, k.b_re, k.b_im, k.c_re, k.c_im))
    xr, xi = x_re[:, :, :n].copy(), x_im[:, :, :n].copy()
    T, B, H = u.shape
    sat = 0
    for t0 in range(0, T, TBLOCK):
        m = min(TBLOCK, T - t0)
        d_re, d_im = input_drive(br, bi, u[t0:t0 + m, :, :, None])
        blk_re, blk_im = np.empty((m, B, H, n)), np.empty((m, B, H, n))
        start = xr, xi
        for j in range(m):
            xr, xi = next_state(ar, ai, xr, xi, d_re[j], d_im[j])
            blk_re[j], blk_im[j] = xr, xi
        if _outside(blk_re, k.state_lo, k.state_hi) or _outside(blk_im, k.state_lo, k.state_hi):
            xr, xi = start
            for j in range(m):
                nr, ni = next_state(ar, ai, xr, xi, d_re[j], d_im[j])
                xr, xi = saturate(nr, k.state_lo, k.state_hi), saturate(ni, k.state_lo, k.state_hi)
                sat += np.count_nonzero(xr != nr) + np.count_nonzero(xi != ni)
                blk_re[j], blk_im[j] = xr, xi
        o = state_message(cr, ci, blk_re, blk_im)
        if _outside(o, k.msg_lo, k.msg_hi):
            oc = saturate(o, k.msg_lo, k.msg_hi)
            sat += np.count_nonzero(oc != o)
            o = oc
        out[t0:t0 + m] = o.sum(axis=-1)
    x_re[:, :, :n], x_im[:, :, :n] = xr, xi
    return sat


def _outside(v: np.ndarray, lo: float, hi: float) -> bool:
    return bool(v.max(initial=0.0) > hi or v.min(initial=0.0) < lo)
