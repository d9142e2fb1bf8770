"""Loihi 2 integer arithmetic, as s4dc maps networks onto it.

Every width, range and rounding rule of the fixed-point semantics lives here
(docs/fixed_point.md explains them); the quantize pass, the bit-exact
simulator and the Lava backend all read these, so they cannot drift apart.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Graded spike messages: 24-bit signed payload (lava: precision=24 ports).
MESSAGE_BITS = 24
# Neuron state registers: 24-bit signed (lava LIF/SDN bit-accurate models).
STATE_BITS = 24
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
# Largest shift a synapse or neuron applies (Dense weight_exp range).
MAX_SHIFT = 24


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

        limits = {"weight": (MIN_WEIGHT_BITS, MAX_WEIGHT_BITS), "a": (MIN_COEF_BITS, MAX_COEF_BITS),
                  "b": (MIN_COEF_BITS, MAX_COEF_BITS), "c": (MIN_COEF_BITS, MAX_COEF_BITS),
                  "state": (8, STATE_BITS), "message": (8, MESSAGE_BITS)}
        for k, (lo, hi) in limits.items():
            v = getattr(self, k)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise BitWidthError(f"{where}: {k} bits = {v!r}; Loihi 2 holds {lo} to {hi}")

    def to_json(self) -> dict:
        return asdict(self)


def qmax(bits: int) -> int:
    """Largest value of a signed `bits`-bit integer."""
    return (1 << (bits - 1)) - 1


def sat(v: np.ndarray, bits: int) -> np.ndarray:
    """Saturate to signed `bits` bits (Loihi saturates, it does not wrap)."""
    m = qmax(bits)
    return np.clip(v, -m - 1, m)


def floor_shift(v: np.ndarray, s: int) -> np.ndarray:
    """Synapse shift (lava Dense): v * 2^-s rounded down; a left shift for s < 0.
    Exact on float64 integers below 2^53 and on int64."""
    if s <= 0:
        return v * float(1 << -s) if v.dtype.kind == "f" else v << -s
    return np.floor(v * 2.0**-s) if v.dtype.kind == "f" else v >> s


def round_shift(v: np.ndarray, s: int) -> np.ndarray:
    """Neuron shift (s4dc's S4D neuron): v * 2^-s rounded half up."""
    if s <= 0:
        return floor_shift(v, s)
    return np.floor(v * 2.0**-s + 0.5) if v.dtype.kind == "f" else (v + (1 << (s - 1))) >> s
