"""MIMO diagonal state spaces (S5, LRU, a dense linear recurrence): one
shared state of P modes driven by every input channel and read by every
output channel, unlike `ssm`'s H independent channels.

Float op `mimo` (float semantics: targets/float_exec.py):
    form 'dense'    : real A (P, P), B (P, H_in), C (H_out, P).
    form 'diagonal' : complex A (P,) (the eigenvalues Lambda), B (P, H_in), C (H_out, P).
    time 'continuous' (dt (P,), one time step per mode, and `discretization`
    'zoh' or 'bilinear'; a dense A needs one dt for all modes) or 'discrete'.
        x_t = A x_{t-1} + B u_t
        y_t = gain * Re(C x_t) + D u_t + bias,   D (H_out, H_in), bias (H_out,)
    gain 2 when `folded` (one mode per conjugate pair), else 1.

Quantized op `qmimo` (Loihi 2 integers, docs/fixed_point.md): B and C are
synapse weights, Lambda at the state precision, one neuron per mode.
"""
from __future__ import annotations

import numpy as np

from s4dc.ir.layer import Layer
from s4dc.ir.ops import OPS, OpDef, arity, fail, param, register_op, sequence_input
from s4dc.ir.ops_quant import _Quantized, bits_attr, int_param, shift_attr
from s4dc.ir.tensor import Tensor
from s4dc.targets.loihi2.numerics import (BIAS_BITS, MAX_A_FRAC, MAX_BIAS_EXP, MAX_EXACT_B_SHIFT, MIN_A_FRAC,
                                         MIN_BIAS_EXP, MIN_SHIFT, SHIFT_PARAM_BITS, qmax)


def _matrix(layer: Layer, name: str) -> np.ndarray:
    a = layer.params.get(name)
    if a is None or a.ndim != 2:
        fail(layer, f"parameter '{name}' must be a 2-D array")
    return a


@register_op
class Mimo(OpDef):
    name = "mimo"
    params = ("A", "B", "C", "D", "bias")
    on_chip = True
    recurrent = True
    fuses_relu = True
    quantizable = True
    synapse_stages = 2  # dense synapses into the mode neurons, dense synapses out of them

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        sequence_input(layer, ins)
        h_in = ins[0].features
        form, time = layer.attrs.get("form"), layer.attrs.get("time")
        a = layer.params.get("A")
        if a is None:
            fail(layer, "missing parameter 'A'")
        h_out = _matrix(layer, "C").shape[0]
        if form == "dense":
            if a.ndim != 2 or a.shape[0] != a.shape[1]:
                fail(layer, f"dense A must be (P, P), got {a.shape}")
            p = a.shape[0]
            param(layer, "A", (p, p))
            param(layer, "B", (p, h_in))
            param(layer, "C", (h_out, p))
            if layer.attrs.get("folded"):
                fail(layer, "a dense (real) state space cannot be conjugate-folded")
        elif form == "diagonal":
            if a.ndim != 1:
                fail(layer, f"diagonal A (the eigenvalues) must be (P,), got {a.shape}")
            p = a.shape[0]
            param(layer, "A", (p,), "complex")
            param(layer, "B", (p, h_in), "complex")
            param(layer, "C", (h_out, p), "complex")
        else:
            fail(layer, f"attribute 'form' must be 'dense' or 'diagonal', got {form!r}")
        param(layer, "D", (h_out, h_in))
        param(layer, "bias", (h_out,))
        if time == "continuous":
            dt = param(layer, "dt", (p,))
            if np.any(dt <= 0):
                fail(layer, "time steps dt must be positive")
            if form == "dense" and p and np.ptp(dt) != 0:
                fail(layer, "a dense continuous A needs one time step dt for all modes")
            if layer.attrs.get("discretization") not in ("zoh", "bilinear"):
                fail(layer, "continuous mimo needs discretization 'zoh' or 'bilinear'")
        elif time != "discrete":
            fail(layer, f"attribute 'time' must be 'continuous' or 'discrete', got {time!r}")
        return h_out, True

    def describe(self, layer: Layer) -> str:
        p = layer.params
        return f" {layer.attrs['form']}/{layer.attrs['time']} P={p['A'].shape[0]} {p['B'].shape[1]}->{p['C'].shape[0]}"


@register_op
class QMimo(_Quantized):
    """Per mode p, with input messages u (H_in,), integers (docs/fixed_point.md):

        r_p  = sum_j b_re[p, j] u_j,  i_p = sum_j b_im[p, j] u_j          exact (B synapses)
        x_p  = sat_state(round((a x)_p 2^-a_frac + (r_p + i i_p) 2^-b_shift_p))
        m_p  = sat_msg(round(x_p 2^-x_shift))                              re and im messages
        v_k  = sat_msg(((sum_p c_re[k,p] mr_p - c_im[k,p] mi_p) >> c_shift)
                        + ((sum_j d[k,j] u_j) >> d_shift) + (bias_mant_k << bias_exp))
        y_k  = max(v_k, 0) if relu else v_k
    """

    name = "qmimo"
    params = ("a_re", "a_im", "b_re", "b_im", "b_shift", "c_re", "c_im", "d", "bias_mant")
    recurrent = True
    synapse_stages = 2

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        sequence_input(layer, ins)
        bits = bits_attr(layer)
        h_in = ins[0].features
        a = layer.params.get("a_re")
        if a is None or a.ndim != 1:
            fail(layer, "a_re must be (P,)")
        p = a.shape[0]
        h_out = _matrix(layer, "c_re").shape[0]
        int_param(layer, "a_re", (p,), bits["a"])
        int_param(layer, "a_im", (p,), bits["a"])
        for k in ("b_re", "b_im"):
            int_param(layer, k, (p, h_in), bits["weight"])
        for k in ("c_re", "c_im"):
            int_param(layer, k, (h_out, p), bits["weight"])
        # -c_im is a synapse weight too (the Lava backend's one C matrix [c_re, -c_im]).
        c_im = layer.params["c_im"]
        if c_im.size and c_im.min() < -qmax(bits["weight"]):
            fail(layer, f"parameter 'c_im' holds -2^{bits['weight'] - 1}, whose negation exceeds {bits['weight']} bits")
        s = int_param(layer, "b_shift", (p,), SHIFT_PARAM_BITS)
        if s.size and (s.min() < MIN_SHIFT or s.max() > MAX_EXACT_B_SHIFT):
            fail(layer, f"parameter 'b_shift' holds shifts outside [{MIN_SHIFT}, {MAX_EXACT_B_SHIFT}]")
        int_param(layer, "d", (h_out, h_in), bits["weight"])
        int_param(layer, "bias_mant", (h_out,), BIAS_BITS)
        fa = shift_attr(layer, "a_frac", MIN_A_FRAC, MAX_A_FRAC)
        if fa != bits["a"] - 1:
            fail(layer, f"a_frac {fa} must be a bits - 1 = {bits['a'] - 1}")
        shift_attr(layer, "x_shift", 0, bits["state"])
        shift_attr(layer, "c_shift")
        shift_attr(layer, "d_shift")
        shift_attr(layer, "bias_exp", MIN_BIAS_EXP, MAX_BIAS_EXP)
        lam = (layer.params["a_re"] + 1j * layer.params["a_im"]) / 2.0**fa
        if lam.size and np.abs(lam).max() >= 1:
            fail(layer, f"quantized eigenvalue with |lambda| = {np.abs(lam).max():.6f} >= 1")
        return h_out, True

    def describe(self, layer: Layer) -> str:
        p = layer.params
        return f" P={p['a_re'].shape[0]} {p['b_re'].shape[1]}->{p['c_re'].shape[0]}"


MIMO, QMIMO = (OPS[c.name] for c in (Mimo, QMimo))


@register_op
class MConv(OpDef):
    """Full (not depthwise) causal convolution over time, a MIMO kernel:
    y_t = sum_l kernel[:, :, l] u_{t-l} + bias, kernel (H_out, H_in, L).
    Only the frontend emits it; the `realize` pass turns it into a mimo
    layer (block-Hankel realization, passes/kernel_fit/block_hankel.py)."""

    name = "mconv"
    params = ("kernel", "bias")
    recurrent = True  # a window of past inputs
    synapse_stages = 2  # realized as a mimo

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        sequence_input(layer, ins)
        k = layer.params.get("kernel")
        if k is None or k.ndim != 3 or k.shape[2] < 1:
            fail(layer, "parameter 'kernel' must be (H_out, H_in, taps)")
        param(layer, "kernel", (k.shape[0], ins[0].features, k.shape[2]))
        param(layer, "bias", (k.shape[0],))
        return k.shape[0], True


MCONV = OPS["mconv"]
