"""The float ops of the IR (semantics: s4dc.ir.ops's docstring; float
implementation: targets/float_exec.py)."""
from __future__ import annotations

import numpy as np

from s4dc.ir.layer import Layer
from s4dc.ir.ops import OPS, OpDef, Shapes, StateSpaceOp, arity, fail, matrix, param, register_op, sequence_input
from s4dc.ir.tensor import Tensor


@register_op
class Input(OpDef):
    name = "input"
    structural = True
    on_chip = True  # the chip's input port: messages from the host

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 0)
        f = layer.attrs.get("features")
        if not isinstance(f, int) or f < 1:
            fail(layer, "attribute 'features' must be a positive int")
        return f, True


@register_op
class Affine(OpDef):
    name = "affine"
    params = ("weight", "bias")
    on_chip = True
    fuses_relu = True
    quantizable = True
    synapse_stages = 1  # as its quantized form: Dense synapses into a unit

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        w = matrix(layer, "weight")
        param(layer, "weight", (w.shape[0], ins[0].features))
        param(layer, "bias", (w.shape[0],))
        return w.shape[0], ins[0].sequence


@register_op
class Conv(OpDef):
    name = "conv"
    params = ("kernel", "D", "bias")
    recurrent = True  # a window of past inputs
    direct_term = True
    synapse_stages = 2  # realized as an ssm

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        h = ins[0].features
        sequence_input(layer, ins)
        k = layer.params.get("kernel")
        if k is None or k.ndim != 2:
            fail(layer, "parameter 'kernel' must be (channels, taps)")
        param(layer, "kernel", (h, k.shape[1]))
        param(layer, "D", (h,))
        param(layer, "bias", (h,))
        return h, True


@register_op
class Ssm(StateSpaceOp):
    """H channels of N states each (A (H, N, N) dense, (H, N) diagonal), one dt per channel."""

    name = "ssm"
    direct_term = True

    def shapes(self, layer: Layer, form: object, a: np.ndarray, h: int) -> Shapes | None:
        if form == "dense":
            if a.ndim != 3 or a.shape[0] != h or a.shape[1] != a.shape[2]:
                fail(layer, f"dense A must be (H={h}, N, N), got {a.shape}")
            state: tuple[int, ...] = (h, a.shape[1], a.shape[1])
        elif form == "diagonal":
            if a.ndim != 2 or a.shape[0] != h:
                fail(layer, f"diagonal A must be (H={h}, N), got {a.shape}")
            state = (h, a.shape[1])
        else:
            return None
        n = a.shape[1]
        return {"A": state, "B": (h, n), "C": (h, n), "D": (h,), "bias": (h,), "dt": (h,)}

    def describe(self, layer: Layer) -> str:
        return f" {layer.attrs['form']}/{layer.attrs['time']} N={layer.params['A'].shape[1]}"


@register_op
class Relu(OpDef):
    name = "relu"
    on_chip = True
    synapse_stages = 1  # a separate ReLU is a unit behind an identity synapse

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        return ins[0].features, ins[0].sequence


@register_op
class Add(OpDef):
    name = "add"
    on_chip = True
    quantizable = True
    synapse_stages = 1

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 2)
        a, b = ins
        if (a.features, a.sequence) != (b.features, b.sequence):
            fail(layer, f"adds '{a.name}' ({a.features}, seq={a.sequence}) to "
                        f"'{b.name}' ({b.features}, seq={b.sequence})")
        return a.features, a.sequence


@register_op
class Readout(OpDef):
    name = "readout"

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        if not ins[0].sequence:
            fail(layer, "input is not a sequence")
        if layer.attrs.get("mode") not in ("last", "mean"):
            fail(layer, "attribute 'mode' must be 'last' or 'mean'")
        return ins[0].features, False


@register_op
class Output(OpDef):
    name = "output"
    structural = True
    on_chip = True  # a sequence output leaves the chip where its producer sits

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        layout = layer.attrs.get("layout")
        want = {"B", "F"} | ({"T"} if ins[0].sequence else set())
        if not isinstance(layout, list) or set(layout) - {"1"} != want or \
                sorted(x for x in layout if x != "1") != sorted(want):
            fail(layer, f"layout {layout!r} must hold B, F{', T' if ins[0].sequence else ''} once each, plus '1's")
        return ins[0].features, ins[0].sequence


# The registered instances, for identity tests (`layer.opdef is SSM`).
INPUT, AFFINE, CONV, SSM, RELU, ADD, READOUT, OUTPUT = (
    OPS[c.name] for c in (Input, Affine, Conv, Ssm, Relu, Add, Readout, Output))
