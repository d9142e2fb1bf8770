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
from s4dc.ir.ops import OPS, OpDef, Shapes, StateSpaceOp, arity, fail, matrix, param, register_op, sequence_input
from s4dc.ir.ops_quant import (_Quantized, a_frac_attr, bits_attr, check_quantized_eigenvalues, int_param,
                               shift_attr, shift_param)
from s4dc.ir.tensor import Tensor
from s4dc.targets.loihi2.numerics import BIAS_BITS, MAX_BIAS_EXP, MAX_EXACT_B_SHIFT, MIN_BIAS_EXP, qmax


@register_op
class Mimo(StateSpaceOp):
    """P modes (A (P, P) dense, (P,) diagonal) read by H_out outputs, one dt per mode."""

    name = "mimo"

    def shapes(self, layer: Layer, form: object, a: np.ndarray, h_in: int) -> Shapes | None:
        h_out = matrix(layer, "C").shape[0]
        if form == "dense":
            if a.ndim != 2 or a.shape[0] != a.shape[1]:
                fail(layer, f"dense A must be (P, P), got {a.shape}")
        elif form == "diagonal":
            if a.ndim != 1:
                fail(layer, f"diagonal A (the eigenvalues) must be (P,), got {a.shape}")
        else:
            return None
        p = a.shape[0]
        return {"A": a.shape, "B": (p, h_in), "C": (h_out, p), "D": (h_out, h_in), "bias": (h_out,), "dt": (p,)}

    def check_dt(self, layer: Layer, form: str, dt: np.ndarray) -> None:
        # one shared dense A: a time step per mode would mean per-mode A's before diagonalizing
        if form == "dense" and dt.size and np.ptp(dt) != 0:
            fail(layer, "a dense continuous A needs one time step dt for all modes")

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
        h_out = matrix(layer, "c_re").shape[0]
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
        shift_param(layer, "b_shift", (p,), MAX_EXACT_B_SHIFT)
        int_param(layer, "d", (h_out, h_in), bits["weight"])
        int_param(layer, "bias_mant", (h_out,), BIAS_BITS)
        fa = a_frac_attr(layer, bits)
        # the messages carry the state's top bits: a shift below state - message
        # would send states wider than a message (the simulator and Lava skip
        # the message rounding and clip at x_shift 0, as the state then fits)
        shift_attr(layer, "x_shift", max(0, bits["state"] - bits["message"]), bits["state"])
        shift_attr(layer, "c_shift")
        shift_attr(layer, "d_shift")
        shift_attr(layer, "bias_exp", MIN_BIAS_EXP, MAX_BIAS_EXP)
        check_quantized_eigenvalues(layer, fa)
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
