"""The IR's operation set: each op defined once, QONNX CustomOp style.

An op is an `OpDef` registered in `OPS`: its typing rule (`infer`: check a
layer's parameters and attributes against its input tensors, return the
output's (features, sequence) or raise IRVerificationError), its parameter
schema, and its traits. Passes, targets and the report ask the op
(`layer.opdef.on_chip`, `graph.by_op(SSM)`) instead of comparing op names;
each target keeps its per-op implementation in a registry of its own keyed
by the op's name (docs/architecture.md).

Float ops (their float semantics: targets/float_exec.py)
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
Quantized ops (Loihi 2 integer semantics: docs/fixed_point.md,
targets/fixed_sim.py): qaffine, qssm, qadd.
"""
from __future__ import annotations

from typing import ClassVar, NoReturn

import numpy as np

from s4dc.errors import IRVerificationError
from s4dc.ir.layer import Layer
from s4dc.ir.tensor import Tensor
from s4dc.registry import Registry


class OpDef:
    """One op of the IR. Subclasses set the traits and write `infer`."""

    name: ClassVar[str]
    params: ClassVar[tuple[str, ...]] = ()  # parameter names it must carry
    # Traits (what passes and targets ask instead of comparing names):
    structural: ClassVar[bool] = False  # input / output markers, no arithmetic
    on_chip: ClassVar[bool] = False     # runs on Loihi 2 cores when its output is a sequence
    quantized: ClassVar[bool] = False   # integer semantics (the quantizer's output)
    recurrent: ClassVar[bool] = False   # keeps a state from one time step to the next
    fuses_relu: ClassVar[bool] = False  # a ReLU after it becomes its neuron's ReLU mode
    synapse_stages: ClassVar[int] = 0   # Dense stages (one step of delay each) from input to output
    quantizable: ClassVar[bool] = False  # the quantize pass has a rule turning it into integers
    direct_term: ClassVar[bool] = False  # y = ... + D u + bias: a parallel skip (u or diag(d) u) folds into D

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        raise NotImplementedError

    def describe(self, layer: Layer) -> str:
        """Extra words for Graph.summary()."""
        return ""

    def __repr__(self) -> str:
        return f"<op {self.name}>"


OPS: Registry[OpDef] = Registry("IR op")


def register_op(cls: type[OpDef]) -> type[OpDef]:
    """Class decorator: registers one instance under `cls.name` (duplicates raise)."""
    OPS.add(cls.name, cls())
    return cls


def op_def(name: str) -> OpDef:
    op = OPS.get(name)
    if op is None:
        raise IRVerificationError(f"unknown op '{name}' (known: {', '.join(OPS.names())})")
    return op


# --- checks the typing rules share ------------------------------------------------
def fail(layer: Layer, what: str) -> NoReturn:
    raise IRVerificationError(f"{layer.where()}: {what}")


def param(layer: Layer, name: str, shape: tuple[int, ...], kind: str = "real") -> np.ndarray:
    if name not in layer.params:
        fail(layer, f"missing parameter '{name}'")
    a = layer.params[name]
    if a.shape != shape:
        fail(layer, f"parameter '{name}' has shape {a.shape}, expected {shape}")
    if kind == "real" and np.iscomplexobj(a):
        fail(layer, f"parameter '{name}' must be real")
    if kind == "complex" and not np.iscomplexobj(a):
        fail(layer, f"parameter '{name}' must be complex")
    if not np.all(np.isfinite(a)):
        fail(layer, f"parameter '{name}' holds NaN or Inf")
    return a


def arity(layer: Layer, ins: list[Tensor], n: int) -> None:
    if len(ins) != n:
        fail(layer, f"takes {n} input(s), got {len(ins)}")


def sequence_input(layer: Layer, ins: list[Tensor]) -> None:
    if not ins[0].sequence:
        fail(layer, "input must be a sequence")


def matrix(layer: Layer, name: str) -> np.ndarray:
    """Parameter `name` as a 2-D array, before its shape is checked against the inputs."""
    a = layer.params.get(name)
    if a is None or a.ndim != 2:
        fail(layer, f"parameter '{name}' must be a 2-D array")
    return a


Shapes = dict[str, tuple[int, ...]]


class StateSpaceOp(OpDef):
    """The typing rule the float state spaces share (`ssm`, `mimo`):
    x_t = A x_{t-1} + B u_t, y_t = gain * Re(C x_t) + D u_t + bias, with A
    real and dense or complex and diagonal (only a diagonal one may be
    conjugate-folded), continuous (dt > 0 and a discretization rule) or
    discrete. A subclass gives the parameters' shapes (`shapes`)."""

    params = ("A", "B", "C", "D", "bias")
    on_chip = True
    recurrent = True
    fuses_relu = True
    quantizable = True
    synapse_stages = 2  # as its quantized form: synapses into the state neurons, synapses out of them

    def shapes(self, layer: Layer, form: object, a: np.ndarray, features: int) -> Shapes | None:
        """The shapes of A, B, C, D, bias (one per output) and dt for an A
        like `a` in `form`, failing where `a` cannot be A in that form;
        None where `form` is neither 'dense' nor 'diagonal'."""
        raise NotImplementedError

    def check_dt(self, layer: Layer, form: str, dt: np.ndarray) -> None:
        """What the op asks of its (positive) time steps beyond their shape."""

    def infer(self, layer: Layer, ins: list[Tensor]) -> tuple[int, bool]:
        arity(layer, ins, 1)
        sequence_input(layer, ins)
        form, time = layer.attrs.get("form"), layer.attrs.get("time")
        a = layer.params.get("A")
        if a is None:
            fail(layer, "missing parameter 'A'")
        shape = self.shapes(layer, form, a, ins[0].features)
        if shape is None:
            fail(layer, f"attribute 'form' must be 'dense' or 'diagonal', got {form!r}")
        for k in ("A", "B", "C"):
            param(layer, k, shape[k], "real" if form == "dense" else "complex")
        if form == "dense" and layer.attrs.get("folded"):
            fail(layer, "a dense (real) state space cannot be conjugate-folded")
        param(layer, "D", shape["D"])
        param(layer, "bias", shape["bias"])
        if time == "continuous":
            dt = param(layer, "dt", shape["dt"])
            if np.any(dt <= 0):
                fail(layer, "time steps dt must be positive")
            self.check_dt(layer, str(form), dt)
            if layer.attrs.get("discretization") not in ("zoh", "bilinear"):
                fail(layer, f"continuous {self.name} needs discretization 'zoh' or 'bilinear'")
        elif time != "discrete":
            fail(layer, f"attribute 'time' must be 'continuous' or 'discrete', got {time!r}")
        return shape["bias"][0], True


# The op set itself (importing them registers them; one module each kind).
from s4dc.ir.ops_float import ADD, AFFINE, CONV, INPUT, OUTPUT, READOUT, RELU, SSM  # noqa: E402
from s4dc.ir.ops_quant import QADD, QAFFINE, QSSM  # noqa: E402
from s4dc.ir.ops_mimo import MIMO, QMIMO  # noqa: E402,F401

__all__ = ["ADD", "AFFINE", "CONV", "INPUT", "OPS", "OUTPUT", "OpDef", "QADD", "QAFFINE", "QSSM", "READOUT",
           "RELU", "SSM", "op_def", "register_op"]
