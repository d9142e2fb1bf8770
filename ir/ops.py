"""The IR's operation set and, for each op, its typing rule.

Each rule checks a layer's parameters and attributes against its input
tensors and returns (features, sequence) of the output tensor, or raises
IRVerificationError. The verifier calls these; passes never bypass them.

Ops
- input    : the model input, a sequence of `features` values per step.
- affine   : y = weight @ x + bias. weight (out, in), bias (out,).
- conv     : causal depthwise convolution over time, y_t[h] = sum_l
             kernel[h, l] x_{t-l}[h] + D[h] x_t[h] + bias[h]. Only the
             frontend emits it; the `realize` pass turns it into an ssm.
- ssm      : per-channel state space, H channels with N states each.
             form 'dense'    : real A (H, N, N), B (H, N), C (H, N).
             form 'diagonal' : complex A (H, N), B (H, N), C (H, N).
             time 'continuous' (with dt (H,) and `discretization`) or
             'discrete'. x_t = A x_{t-1} + B u_t;
             y_t = gain * Re(C . x_t) + D u_t + bias, gain 2 when `folded`
             (one state per conjugate pair), else 1.
- relu     : max(x, 0).
- add      : x + y, same shape.
- readout  : sequence -> vector; mode 'last' (last step) or 'mean'.
- output   : marks a model output; `layout` says how to arrange it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from s4dc.errors import IRVerificationError
from s4dc.ir.layer import Layer
from s4dc.ir.tensor import Tensor

Rule = Callable[[Layer, list[Tensor]], tuple[int, bool]]
RULES: dict[str, Rule] = {}


def rule(op: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[op] = fn
        return fn
    return register


def _fail(layer: Layer, what: str) -> None:
    raise IRVerificationError(f"{layer.where()}: {what}")


def _param(layer: Layer, name: str, shape: tuple[int, ...], kind: str = "real") -> np.ndarray:
    if name not in layer.params:
        _fail(layer, f"missing parameter '{name}'")
    a = layer.params[name]
    if a.shape != shape:
        _fail(layer, f"parameter '{name}' has shape {a.shape}, expected {shape}")
    if kind == "real" and np.iscomplexobj(a):
        _fail(layer, f"parameter '{name}' must be real")
    if kind == "complex" and not np.iscomplexobj(a):
        _fail(layer, f"parameter '{name}' must be complex")
    if not np.all(np.isfinite(a)):
        _fail(layer, f"parameter '{name}' holds NaN or Inf")
    return a


def _arity(layer: Layer, ins: list[Tensor], n: int) -> None:
    if len(ins) != n:
        _fail(layer, f"takes {n} input(s), got {len(ins)}")


@rule("input")
def _input(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 0)
    f = layer.attrs.get("features")
    if not isinstance(f, int) or f < 1:
        _fail(layer, "attribute 'features' must be a positive int")
    return f, True


@rule("affine")
def _affine(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 1)
    w = layer.params.get("weight")
    if w is None or w.ndim != 2:
        _fail(layer, "parameter 'weight' must be a 2-D array")
    _param(layer, "weight", (w.shape[0], ins[0].features))
    _param(layer, "bias", (w.shape[0],))
    return w.shape[0], ins[0].sequence


@rule("conv")
def _conv(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 1)
    h = ins[0].features
    if not ins[0].sequence:
        _fail(layer, "input must be a sequence")
    k = layer.params.get("kernel")
    if k is None or k.ndim != 2:
        _fail(layer, "parameter 'kernel' must be (channels, taps)")
    _param(layer, "kernel", (h, k.shape[1]))
    _param(layer, "D", (h,))
    _param(layer, "bias", (h,))
    return h, True


@rule("ssm")
def _ssm(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 1)
    if not ins[0].sequence:
        _fail(layer, "input must be a sequence")
    h = ins[0].features
    form, time = layer.attrs.get("form"), layer.attrs.get("time")
    a = layer.params.get("A")
    if a is None:
        _fail(layer, "missing parameter 'A'")
    if form == "dense":
        if a.ndim != 3 or a.shape[0] != h or a.shape[1] != a.shape[2]:
            _fail(layer, f"dense A must be (H={h}, N, N), got {a.shape}")
        n = a.shape[1]
        _param(layer, "A", (h, n, n))
        _param(layer, "B", (h, n))
        _param(layer, "C", (h, n))
        if layer.attrs.get("folded"):
            _fail(layer, "a dense (real) state space cannot be conjugate-folded")
    elif form == "diagonal":
        if a.ndim != 2 or a.shape[0] != h:
            _fail(layer, f"diagonal A must be (H={h}, N), got {a.shape}")
        n = a.shape[1]
        _param(layer, "A", (h, n), "complex")
        _param(layer, "B", (h, n), "complex")
        _param(layer, "C", (h, n), "complex")
    else:
        _fail(layer, f"attribute 'form' must be 'dense' or 'diagonal', got {form!r}")
    _param(layer, "D", (h,))
    _param(layer, "bias", (h,))
    if time == "continuous":
        dt = _param(layer, "dt", (h,))
        if np.any(dt <= 0):
            _fail(layer, "time steps dt must be positive")
        if layer.attrs.get("discretization") not in ("zoh", "bilinear"):
            _fail(layer, "continuous ssm needs discretization 'zoh' or 'bilinear'")
    elif time != "discrete":
        _fail(layer, f"attribute 'time' must be 'continuous' or 'discrete', got {time!r}")
    return h, True


@rule("relu")
def _relu(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 1)
    return ins[0].features, ins[0].sequence


@rule("add")
def _add(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 2)
    a, b = ins
    if (a.features, a.sequence) != (b.features, b.sequence):
        _fail(layer, f"adds '{a.name}' ({a.features}, seq={a.sequence}) to "
                     f"'{b.name}' ({b.features}, seq={b.sequence})")
    return a.features, a.sequence


@rule("readout")
def _readout(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 1)
    if not ins[0].sequence:
        _fail(layer, "input is not a sequence")
    if layer.attrs.get("mode") not in ("last", "mean"):
        _fail(layer, "attribute 'mode' must be 'last' or 'mean'")
    return ins[0].features, False


@rule("output")
def _output(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 1)
    layout = layer.attrs.get("layout")
    want = {"B", "F"} | ({"T"} if ins[0].sequence else set())
    if not isinstance(layout, list) or set(layout) - {"1"} != want or \
            sorted(x for x in layout if x != "1") != sorted(want):
        _fail(layer, f"layout {layout!r} must hold B, F{', T' if ins[0].sequence else ''} once each, plus '1's")
    return ins[0].features, ins[0].sequence


# --- quantized ops (Loihi 2 integer semantics, docs/fixed_point.md) ---------------
def _int_param(layer: Layer, name: str, shape: tuple[int, ...], bits: int) -> np.ndarray:
    a = layer.params.get(name)
    if a is None:
        _fail(layer, f"missing parameter '{name}'")
    if a.shape != shape:
        _fail(layer, f"parameter '{name}' has shape {a.shape}, expected {shape}")
    if a.dtype.kind != "i":
        _fail(layer, f"parameter '{name}' must be integer, got {a.dtype}")
    lim = 1 << (bits - 1)
    if a.size and (a.min() < -lim or a.max() > lim - 1):
        _fail(layer, f"parameter '{name}' exceeds {bits} signed bits")
    return a


def _bits(layer: Layer) -> dict:
    b = layer.attrs.get("bits")
    if not isinstance(b, dict):
        _fail(layer, "attribute 'bits' missing")
    return b


def _shift_attr(layer: Layer, name: str, lo: int = -24, hi: int = 40) -> int:
    s = layer.attrs.get(name)
    if not isinstance(s, int) or not lo <= s <= hi:
        _fail(layer, f"attribute '{name}' = {s!r} is not a shift in [{lo}, {hi}]")
    return s


@rule("qaffine")
def _qaffine(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 1)
    bits = _bits(layer)
    w = layer.params.get("weight")
    if w is None or w.ndim != 2:
        _fail(layer, "parameter 'weight' must be a 2-D integer array")
    _int_param(layer, "weight", (w.shape[0], ins[0].features), bits["weight"])
    _int_param(layer, "bias_mant", (w.shape[0],), 16)
    _shift_attr(layer, "shift")
    _shift_attr(layer, "bias_exp", 0, 24)
    return w.shape[0], ins[0].sequence


@rule("qssm")
def _qssm(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 1)
    if not ins[0].sequence:
        _fail(layer, "input must be a sequence")
    bits = _bits(layer)
    h = ins[0].features
    a = layer.params.get("a_re")
    if a is None or a.ndim != 2 or a.shape[0] != h:
        _fail(layer, f"a_re must be (H={h}, N)")
    shape = a.shape
    for k, b in (("a_re", "a"), ("a_im", "a"), ("b_re", "b"), ("b_im", "b"), ("c_re", "c"), ("c_im", "c")):
        _int_param(layer, k, shape, bits[b])
    # b_shift <= 26 keeps the state update exact in float64 (docs/fixed_point.md).
    for k, hi in (("b_shift", 26), ("c_shift", 40)):
        s = _int_param(layer, k, shape, 8)
        if s.size and (s.min() < -24 or s.max() > hi):
            _fail(layer, f"parameter '{k}' holds shifts outside [-24, {hi}]")
    _int_param(layer, "d", (h,), bits["weight"])
    _int_param(layer, "bias_mant", (h,), 16)
    fa = _shift_attr(layer, "a_frac", 1, 30)
    if fa != bits["a"] - 1:
        _fail(layer, f"a_frac {fa} must be a bits - 1 = {bits['a'] - 1}")
    _shift_attr(layer, "d_shift")
    _shift_attr(layer, "bias_exp", 0, 24)
    lam = (layer.params["a_re"] + 1j * layer.params["a_im"]) / 2.0**fa
    if lam.size and np.abs(lam).max() >= 1:
        _fail(layer, f"quantized eigenvalue with |lambda| = {np.abs(lam).max():.6f} >= 1")
    return h, True


@rule("qadd")
def _qadd(layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
    _arity(layer, ins, 2)
    a, b = ins
    if (a.features, a.sequence) != (b.features, b.sequence):
        _fail(layer, "adds tensors of different shapes")
    _shift_attr(layer, "shift_a")
    _shift_attr(layer, "shift_b")
    return a.features, a.sequence
