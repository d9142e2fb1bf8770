"""Loihi 2 integer arithmetic, as s4dc maps networks onto it.

Every width, range and rounding rule of the fixed-point semantics lives here
(docs/fixed_point.md explains them); the IR's checks, the quantize pass and
QAT, the bit-exact simulator and the Lava backend all read these, so they
cannot drift apart. The S4D neuron's recurrence itself, written once on these
rules, is `targets/loihi2/qssm.py`.

This module imports numpy only (the IR imports it: keep it cheap).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# --- widths ---------------------------------------------------------------------
# Graded spike messages: 24-bit signed payload (lava: precision=24 ports).
MESSAGE_BITS = 24
MIN_MESSAGE_BITS = 8
# Neuron state registers: 24-bit signed (lava LIF/SDN bit-accurate models).
STATE_BITS = 24
MIN_STATE_BITS = 8
# Synaptic weight mantissa: at most 8 bits signed (lava Dense clips to 8 bits).
MAX_WEIGHT_BITS = 8
MIN_WEIGHT_BITS = 2
# S4D neuron coefficients (A, B, C) live in neuron registers, not synapse
# memory; 16 bits is the "descaling factor" width reported for the paper's
# mapping. Configurable between these bounds.
MAX_COEF_BITS = 16
MIN_COEF_BITS = 4
# Sigma-delta bias: 16-bit mantissa (lava SigmaDelta fixed model), shifted
# left by a per-layer exponent into the 24-bit state.
BIAS_BITS = 16
# Per-neuron shift parameters (the S4D neuron's b_shift, c_shift): 8-bit signed.
SHIFT_PARAM_BITS = 8
# Counters the Lava models keep (saturations): 32 bits.
COUNTER_BITS = 32

# --- ranges ---------------------------------------------------------------------
# Every shift the IR holds (synapse shifts, d_shift, shift_a/b, c_shift): a
# right shift by s, a left shift for s < 0.
MIN_SHIFT = -24
MAX_SHIFT = 40
# b_shift's upper bound: with b_shift <= 26 the S4D state update's unrounded
# sum (a x 2^-a_frac + b u 2^-b_shift, a multiple of 2^-max(a_frac, b_shift)
# below 2^25 wherever the state does not saturate) fits float64's 53 bits,
# so the simulator computes it exactly (docs/fixed_point.md).
MAX_EXACT_B_SHIFT = 26
# A bias mantissa is shifted left by bias_exp in [0, 24] (into a 24-bit register).
MIN_BIAS_EXP = 0
MAX_BIAS_EXP = 24
# Fraction bits of the S4D eigenvalue coefficients (a_frac = a bits - 1).
MIN_A_FRAC = 1
MAX_A_FRAC = 30


@dataclass(frozen=True)
class BitWidths:
    """Bit widths of one layer (hls4ml-style precision config)."""

    weight: int = 8           # affine and D-path synapse mantissas
    a: int = 16               # S4D eigenvalue coefficients (real and imaginary)
    b: int = 16               # S4D input coefficients
    c: int = 16               # S4D output coefficients
    state: int = STATE_BITS   # S4D state registers
    message: int = MESSAGE_BITS

    def check(self, where: str) -> None:
        from s4dc.errors import BitWidthError

        if (why := width_problem(asdict(self))) is not None:
            raise BitWidthError(f"{where}: {why}")

    def to_json(self) -> dict:
        return asdict(self)


# The widths Loihi 2 holds for each BitWidths field, [lo, hi].
WIDTH_LIMITS = {"weight": (MIN_WEIGHT_BITS, MAX_WEIGHT_BITS), "a": (MIN_COEF_BITS, MAX_COEF_BITS),
                "b": (MIN_COEF_BITS, MAX_COEF_BITS), "c": (MIN_COEF_BITS, MAX_COEF_BITS),
                "state": (MIN_STATE_BITS, STATE_BITS), "message": (MIN_MESSAGE_BITS, MESSAGE_BITS)}


def width_problem(widths: dict) -> str | None:
    """What is wrong with a layer's widths (every BitWidths field, an int
    within WIDTH_LIMITS), or None: one rule for the --config check and the
    verifier's check of a quantized layer's `bits`."""
    for k, (lo, hi) in WIDTH_LIMITS.items():
        if k not in widths:
            return f"{k} bits missing"
        v = widths[k]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            return f"{k} bits = {v!r}; Loihi 2 holds {lo} to {hi}"
    return None


# --- rules ----------------------------------------------------------------------
def qmax(bits: int) -> int:
    """Largest value of a signed `bits`-bit integer."""
    return (1 << (bits - 1)) - 1


def sat(v: np.ndarray, bits: int) -> np.ndarray:
    """Saturate to signed `bits` bits (Loihi saturates, it does not wrap)."""
    m = qmax(bits)
    return np.clip(v, -m - 1, m)


def sat_count(v: np.ndarray, bits: int) -> int:
    """Saturate `v` (a fresh int64 or float64 array) in place to signed `bits`
    bits; returns how many values were clipped. Two reductions on the common
    path, counting and clipping only when something is out of range."""
    m = qmax(bits)
    if v.max(initial=0) > m or v.min(initial=0) < -m - 1:
        n = int(np.count_nonzero((v > m) | (v < -m - 1)))
        np.clip(v, -m - 1, m, out=v)
        return n
    return 0


def floor_shift(v: np.ndarray, s: int) -> np.ndarray:
    """Synapse shift (lava Dense): v * 2^-s rounded down; a left shift for s < 0.
    Exact on float64 integers below 2^53 (scaling by a power of two is exact,
    then one floor) and on int64."""
    if s <= 0:
        return v * float(1 << -s) if v.dtype.kind == "f" else v << -s
    if v.dtype.kind != "f":
        return v >> s
    r = v * 2.0**-s
    return np.floor(r, out=r)


def round_half_up(v: np.ndarray) -> np.ndarray:
    """s4dc's one rounding rule, floor(v + 1/2): the quantizer's grids, the
    host's input encoding and (inline, in `qssm.py`) the S4D neuron."""
    return np.floor(v + 0.5)


def round_to_grid(v: np.ndarray, e: "int | np.ndarray", bits: int, symmetric: bool = False) -> np.ndarray:
    """The quantizer's rounding: clip(floor(v 2^-e + 1/2)) to `bits` signed
    bits, with a per-tensor or per-element exponent `e`. `symmetric` stops at
    -qmax: exponents derived from a peak (B, C, biases) never reach -qmax-1,
    and a value on that rail would make a peak-derived exponent one coarser
    (quantization-aware training keeps its values where the rule can find them)."""
    m = qmax(bits)
    lo = -m if symmetric else -m - 1
    return np.clip(round_half_up(v * np.exp2(-np.asarray(e, np.float64))), lo, m).astype(np.int64)
