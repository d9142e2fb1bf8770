"""The MIMO mode neuron's integer recurrence and the whole layer (docs/fixed_point.md, `qmimo`).

Per mode p, with the B synapses' exact sums r_p + i i_p of the input messages:

    x_p' = sat_state(round((a x_p) 2^-a_frac + (r_p + i i_p) 2^-b_shift_p))   (re and im)

the same update as the S4D neuron's (`qssm.next_state`, one round half up
of the exact sum), with the synapse sum in place of b u. Then the state
messages (`x_shift`), and the output units' C and D synapse sums, bias,
saturation and ReLU.

Everything is float64 holding exact integers (the argument of qssm.py):
with weights of w <= 8 bits (`MAX_WEIGHT_BITS`) and messages of 24, a B
sum is an integer below 2^(w - 1 + 23 + log2 H_in) in magnitude (times
2^-b_shift, folded into the weights: exact), a C sum one below
2^(w - 1 + 23 + log2 2P), a D sum one below 2^(w - 1 + 23 + log2 H_in)
(36, 39 and 36 bits at H = 64, P = 256; 53 would take a fan-in of 2^23).
Every partial sum, in any order, is bounded the same way, so BLAS gives
each sum exactly whatever its blocking, summation order or FMA use.
`run_layer` therefore cuts the sequence into blocks as suits the cache:

- per block of time steps (`ROWS` sample-steps): the drive for every step
  in one BLAS call (B's rows [b_re; b_im] 2^-b_shift together), the
  recurrence over the block written over that buffer (states, or messages
  for x_shift > 0), the C readout of the block in one BLAS call, D's in
  another, and one pass for shifts, bias, saturation and ReLU; the block's
  buffers stay in the core's L2 cache instead of a whole sequence of drives
  going through memory four times;
- with numba (installed, `S4DC_NO_JIT` unset) the recurrence (each sample's
  modes in a vector, time outer) and the output pass are compiled kernels,
  and the batch's samples are split over one thread per core, each running
  its blocks with single-threaded BLAS (threadpoolctl), so every block's
  data stays on one core and no BLAS call waits on another core;
- without numba the same blocks run in numpy (whole (b, P) arrays per step).

Both give the same integers (tests/test_mimo_quant.py checks both against
an independent Python-integer reference).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from s4dc.targets.loihi2 import qssm
from s4dc.targets.loihi2.numerics import qmax, sat_count
from s4dc.targets.loihi2.qssm import AVAILABLE, next_state, numba, saturate

ROWS = 256  # sample-steps per block and thread: the drive (ROWS x 2P float64) stays in L2


# --- constants ------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    """A qmimo layer's integers as float64, shifts folded in where exact."""

    a_re: np.ndarray  # (P,) a 2^-a_frac
    a_im: np.ndarray
    bt: np.ndarray  # (H_in, 2P): [b_re; b_im] 2^-b_shift, transposed
    ct: np.ndarray  # (2P, H_out): [c_re, -c_im], transposed
    dt: np.ndarray  # (H_in, H_out)
    bias: np.ndarray  # (H_out,) bias_mant 2^bias_exp
    x_shift: int
    c_scale: float  # 2^-c_shift
    d_scale: float  # 2^-d_shift
    relu: bool
    s_lo: float  # state rails
    s_hi: float
    m_lo: float  # message rails
    m_hi: float
    message_bits: int

    @property
    def modes(self) -> int:
        return self.a_re.shape[0]

    @property
    def h_out(self) -> int:
        return self.ct.shape[1]


def fold(params: dict[str, np.ndarray], attrs: dict[str, Any]) -> Layer:
    """`Layer` from a qmimo layer's params and attrs."""
    p, a = params, attrs
    f64 = lambda v: np.asarray(v, np.float64)  # noqa: E731
    sb = 2.0 ** -f64(p["b_shift"])  # b_shift folded into B's rows: exact
    sa = 2.0 ** -float(a["a_frac"])
    s, m = float(qmax(a["bits"]["state"])), float(qmax(a["bits"]["message"]))
    return Layer(a_re=f64(p["a_re"]) * sa, a_im=f64(p["a_im"]) * sa,
                 bt=np.ascontiguousarray(np.concatenate([f64(p["b_re"]) * sb[:, None], f64(p["b_im"]) * sb[:, None]]).T),
                 ct=np.ascontiguousarray(np.concatenate([f64(p["c_re"]), -f64(p["c_im"])], axis=1).T),
                 dt=np.ascontiguousarray(f64(p["d"]).T), bias=f64(p["bias_mant"]) * 2.0 ** a["bias_exp"],
                 x_shift=int(a["x_shift"]), c_scale=2.0 ** -float(a["c_shift"]), d_scale=2.0 ** -float(a["d_shift"]),
                 relu=bool(a.get("relu")), s_lo=-s - 1.0, s_hi=s, m_lo=-m - 1.0, m_hi=m,
                 message_bits=int(a["bits"]["message"]))


# --- the recurrence -------------------------------------------------------------
def _modes_kernel(a_re, a_im, d, x_re, x_im, half, lo, hi, x_shift, x_scale, m_lo, m_hi):
    """numba: d (T, B, 2P) drives without (half = 1/2) or with (half = 0)
    the rounding's half, overwritten with each step's states, or with their
    messages round(x 2^-x_shift) (saturated, counted) for x_shift > 0."""
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
                nr, ni = next_state(a_re[p], a_im[p], xr[p], xi[p], row[p] + half, row[P + p] + half)
                sr = saturate(nr, lo, hi)
                si = saturate(ni, lo, hi)
                nsat += (sr != nr) + (si != ni)
                xr[p] = sr
                xi[p] = si
                row[p] = sr
                row[P + p] = si
            if x_shift:  # messages narrower than states: round to their width
                for j in range(P2):
                    v = np.floor(row[j] * x_scale + 0.5)
                    c = saturate(v, m_lo, m_hi)
                    nsat += c != v
                    row[j] = c
        x_re[b] = xr
        x_im[b] = xi
        sat += nsat
    return sat


def _output_kernel(yc, yd, c_scale, d_scale, bias, lo, hi, relu, out, t0, s0):
    """numba: the output units of a block, yc and yd (T, b, H_out):
    sat_msg(floor(C sum 2^-c_shift) + floor(D sum 2^-d_shift) + bias), ReLU,
    into out[t0 + t, s0 + s]. A left shift (scale >= 1) of an integer is
    exact, so floor changes nothing there."""
    T, B, H = yc.shape
    nsat = 0
    for t in range(T):
        for b in range(B):
            o = out[t0 + t, s0 + b]
            for k in range(H):
                v = np.floor(yc[t, b, k] * c_scale) + np.floor(yd[t, b, k] * d_scale) + bias[k]
                c = saturate(v, lo, hi)
                nsat += c != v
                o[k] = max(c, 0.0) if relu else c
    return nsat


if AVAILABLE:
    _kernel_serial = numba.njit(**qssm._FLAGS)(_modes_kernel)
    _output_serial = numba.njit(**qssm._FLAGS)(_output_kernel)


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


# --- the layer --------------------------------------------------------------------
def run_layer(k: Layer, u: np.ndarray, x_re: np.ndarray, x_im: np.ndarray, jit: bool) -> tuple[np.ndarray, int]:
    """A qmimo layer over a sequence: u (T, B, H_in) input messages
    (time-major float64 integers), x (B, P) state, updated in place.
    Returns the output messages (T, B, H_out) and the count of saturated
    values (states, state messages, outputs)."""
    T, B, _ = u.shape
    out = np.empty((T, B, k.h_out))
    jit = jit and AVAILABLE
    n = threads(B, T) if jit else 1
    if n <= 1:
        if qssm.PARALLEL or _controller() is None:
            return out, _run_part(k, u, x_re, x_im, out, 0, B, jit)
        with _controller().limit(limits=1, user_api="blas"):  # a worker process: the batch is split already
            return out, _run_part(k, u, x_re, x_im, out, 0, B, jit)
    bounds = np.linspace(0, B, n + 1).round().astype(int)
    with _controller().limit(limits=1, user_api="blas"):  # one BLAS thread per part: its blocks stay on its core
        sats = list(_pool().map(lambda i: _run_part(k, u, x_re, x_im, out, bounds[i], bounds[i + 1], jit),
                                range(n)))
    return out, sum(sats)


def _run_part(k: Layer, u: np.ndarray, x_re: np.ndarray, x_im: np.ndarray, out: np.ndarray, s0: int, s1: int,
              jit: bool) -> int:
    """Samples s0:s1 of `run_layer`, a block of time steps at a time."""
    T, _, H = u.shape
    b = s1 - s0
    P2 = 2 * k.modes
    tb = max(1, min(T, ROWS // b))
    rows = tb * b
    drive, yc, yd = np.empty((rows, P2)), np.empty((rows, k.h_out)), np.empty((rows, k.h_out))
    xr, xi = x_re[s0:s1], x_im[s0:s1]  # views: updated in place
    sat = 0
    for t0 in range(0, T, tb):
        m = min(tb, T - t0)
        r = m * b
        ub = np.ascontiguousarray(u[t0:t0 + m, s0:s1], np.float64).reshape(r, H)
        d = drive[:r]
        np.matmul(ub, k.bt, out=d)  # every step's drive [re | im]: one BLAS call, exact
        d3 = d.reshape(m, b, P2)
        if jit:
            sat += int(_kernel_serial(k.a_re, k.a_im, d3, xr, xi, 0.5, k.s_lo, k.s_hi, k.x_shift,
                                      2.0 ** -k.x_shift, k.m_lo, k.m_hi))
        else:
            d += 0.5
            sat += _modes_numpy(k.a_re, k.a_im, d3, xr, xi, k.s_lo, k.s_hi)
            if k.x_shift:  # d holds the states [x_re | x_im]; wider than messages: round to their width
                d *= 2.0 ** -k.x_shift
                d += 0.5
                np.floor(d, out=d)
                sat += sat_count(d, k.message_bits)
        c, dd = yc[:r], yd[:r]
        np.matmul(d, k.ct, out=c)  # the C readout of the block: one BLAS call, exact
        np.matmul(ub, k.dt, out=dd)
        if jit:
            sat += int(_output_serial(c.reshape(m, b, -1), dd.reshape(m, b, -1), k.c_scale, k.d_scale, k.bias,
                                      k.m_lo, k.m_hi, k.relu, out, t0, s0))
        else:
            c *= k.c_scale
            np.floor(c, out=c)
            dd *= k.d_scale
            np.floor(dd, out=dd)
            c += dd
            c += k.bias
            sat += sat_count(c, k.message_bits)
            if k.relu:
                np.maximum(c, 0.0, out=c)
            out[t0:t0 + m, s0:s1] = c.reshape(m, b, -1)
    return sat


# --- threads ------------------------------------------------------------------------
MIN_PART = 32  # sample-steps a thread gets at least (below that, starting it costs more than it saves)
_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()  # two user threads simulating at once start one pool
_CTL: Any = None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads(batch: int, steps: int = 1 << 30) -> int:
    """Threads for a batch of `steps` steps: one per core, at most one per
    sample and MIN_PART sample-steps; one where the batch is split over
    processes already (`qssm.PARALLEL` cleared, `FixedSimulator.run(workers=N)`)
    or threadpoolctl (to hold BLAS to one thread per part) is missing."""
    if not qssm.PARALLEL or _controller() is None:
        return 1
    return max(1, min(batch, _cores(), batch * steps // MIN_PART))


def _controller() -> Any:
    global _CTL
    if _CTL is None:
        try:
            from threadpoolctl import ThreadpoolController
            _CTL = ThreadpoolController()
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _CTL = False
    return _CTL or None


def _pool() -> ThreadPoolExecutor:
    """The worker threads, started once per process (a forked child starts its own)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), ThreadPoolExecutor(_cores(), thread_name_prefix="s4dc-qmimo"))
        return _POOL[1]
