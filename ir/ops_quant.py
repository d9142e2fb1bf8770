"""The quantized ops of the IR: Loihi 2 integer semantics
(docs/fixed_point.md; bit-exact implementation: targets/fixed_sim.py)."""
from __future__ import annotations

import numpy as np

from s4dc.ir.layer import Layer
from s4dc.ir.ops import OPS, OpDef, arity, fail, register_op, sequence_input
from s4dc.ir.tensor import Tensor
from s4dc.targets.loihi2.numerics import (BIAS_BITS, MAX_A_FRAC, MAX_BIAS_EXP, MAX_EXACT_B_SHIFT, MAX_SHIFT,
                                         MIN_A_FRAC, MIN_BIAS_EXP, MIN_SHIFT, SHIFT_PARAM_BITS, width_problem)


def int_param(layer: Layer, name: str, shape: tuple[int, ...], bits: int) -> np.ndarray:
    a = layer.params.get(name)
    if a is None:
        fail(layer, f"missing parameter '{name}'")
    if a.shape != shape:
        fail(layer, f"parameter '{name}' has shape {a.shape}, expected {shape}")
    if a.dtype.kind != "i":
        fail(layer, f"parameter '{name}' must be integer, got {a.dtype}")
    lim = 1 << (bits - 1)
    if a.size and (a.min() < -lim or a.max() > lim - 1):
        fail(layer, f"parameter '{name}' exceeds {bits} signed bits")
    return a


def shift_param(layer: Layer, name: str, shape: tuple[int, ...], hi: int) -> np.ndarray:
    """Per-state shifts in [MIN_SHIFT, hi]; a b_shift's hi, MAX_EXACT_B_SHIFT, keeps the
    state update exact in float64 (docs/fixed_point.md)."""
    s = int_param(layer, name, shape, SHIFT_PARAM_BITS)
    if s.size and (s.min() < MIN_SHIFT or s.max() > hi):
        fail(layer, f"parameter '{name}' holds shifts outside [{MIN_SHIFT}, {hi}]")
    return s


def a_frac_attr(layer: Layer, bits: dict) -> int:
    """The eigenvalues' fraction bits: all of a's bits but its sign."""
    fa = shift_attr(layer, "a_frac", MIN_A_FRAC, MAX_A_FRAC)
    if fa != bits["a"] - 1:
        fail(layer, f"a_frac {fa} must be a bits - 1 = {bits['a'] - 1}")
    return fa


def check_quantized_eigenvalues(layer: Layer, a_frac: int) -> None:
    """|lambda| < 1 for every (a_re + i a_im) 2^-a_frac: a stable recurrence."""
    lam = (layer.params["a_re"] + 1j * layer.params["a_im"]) / 2.0**a_frac
    if lam.size and np.abs(lam).max() >= 1:
        fail(layer, f"quantized eigenvalue with |lambda| = {np.abs(lam).max():.6f} >= 1")


def bits_attr(layer: Layer) -> dict:
    """The layer's widths, each within what Loihi 2 holds (a graph.json
    edited to 16-bit weights would run in the simulator but not on the chip)."""
    b = layer.attrs.get("bits")
    if not isinstance(b, dict):
        fail(layer, "attribute 'bits' missing")
    if (why := width_problem(b)) is not None:
        fail(layer, f"attribute 'bits': {why}")
    return b


def shift_attr(layer: Layer, name: str, lo: int = MIN_SHIFT, hi: int = MAX_SHIFT) -> int:
    s = layer.attrs.get(name)
    if not isinstance(s, int) or not lo <= s <= hi:
        fail(layer, f"attribute '{name}' = {s!r} is not a shift in [{lo}, {hi}]")
    return s


class _Quantized(OpDef):
    on_chip = True
    quantized = True


@register_op
class QAffine(_Quantized):
    name = "qaffine"
    params = ("weight", "bias_mant")
    synapse_stages = 1  # Dense synapses into a unit

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        bits = bits_attr(layer)
        w = layer.params.get("weight")
        if w is None or w.ndim != 2:
            fail(layer, "parameter 'weight' must be a 2-D integer array")
        int_param(layer, "weight", (w.shape[0], ins[0].features), bits["weight"])
        int_param(layer, "bias_mant", (w.shape[0],), BIAS_BITS)
        shift_attr(layer, "shift")
        shift_attr(layer, "bias_exp", MIN_BIAS_EXP, MAX_BIAS_EXP)
        return w.shape[0], ins[0].sequence


@register_op
class QSsm(_Quantized):
    name = "qssm"
    params = ("a_re", "a_im", "b_re", "b_im", "c_re", "c_im", "b_shift", "c_shift", "d", "bias_mant")
    recurrent = True
    synapse_stages = 2  # expand synapses into the state neurons, sum synapses out of them

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        sequence_input(layer, ins)
        bits = bits_attr(layer)
        h = ins[0].features
        a = layer.params.get("a_re")
        if a is None or a.ndim != 2 or a.shape[0] != h:
            fail(layer, f"a_re must be (H={h}, N)")
        shape = a.shape
        for k, b in (("a_re", "a"), ("a_im", "a"), ("b_re", "b"), ("b_im", "b"), ("c_re", "c"), ("c_im", "c")):
            int_param(layer, k, shape, bits[b])
        shift_param(layer, "b_shift", shape, MAX_EXACT_B_SHIFT)
        shift_param(layer, "c_shift", shape, MAX_SHIFT)
        int_param(layer, "d", (h,), bits["weight"])
        int_param(layer, "bias_mant", (h,), BIAS_BITS)
        fa = a_frac_attr(layer, bits)
        shift_attr(layer, "d_shift")
        shift_attr(layer, "bias_exp", MIN_BIAS_EXP, MAX_BIAS_EXP)
        check_quantized_eigenvalues(layer, fa)
        return h, True


@register_op
class QAdd(_Quantized):
    name = "qadd"
    synapse_stages = 1  # two shifted identity synapses into a unit

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 2)
        a, b = ins
        if (a.features, a.sequence) != (b.features, b.sequence):
            fail(layer, "adds tensors of different shapes")
        shift_attr(layer, "shift_a")
        shift_attr(layer, "shift_b")
        return a.features, a.sequence


QAFFINE, QSSM, QADD = (OPS[c.name] for c in (QAffine, QSsm, QAdd))
