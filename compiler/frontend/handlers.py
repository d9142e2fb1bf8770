"""Op handlers: one function per ONNX op (or group of ops) that lowers a node
touching an activation into IR layers. Registered by (domain, op_type), as
hls4ml's converters are. Anything without a handler is refused with a reason
and the list of what is supported."""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import helper

from s4dc.errors import UnsupportedOpError, UnsupportedPatternError
from s4dc.frontend.lower import Frontend, where
from s4dc.frontend.onnx_prep import torch_module
from s4dc.frontend.values import PROBE_BATCHES, Act, Const, Sym, Value
from s4dc.registry import DuplicateRegistration

Handler = Callable[[Frontend, onnx.NodeProto, list], list]
HANDLERS: dict[tuple[str, str], Handler] = {}


def handles(*ops: str, domain: str = "") -> Callable[[Handler], Handler]:
    """Register the handler of ONNX op types `ops` in `domain` (twice raises)."""
    def deco(fn: Handler) -> Handler:
        for op in ops:
            if (domain, op) in HANDLERS:
                raise DuplicateRegistration(f"frontend handler: '{domain or 'ai.onnx'}.{op}' is registered twice")
            HANDLERS[(domain, op)] = fn
        return fn
    return deco


_WHY = {
    **{op: "recurrent cells other than linear state spaces cannot run as Loihi 2 S4D neurons"
       for op in ("LSTM", "GRU", "RNN")},
    **{op: "normalization over features at run time is not supported: the n-S4D model for Loihi 2 "
           "has no normalization layers (eval-mode BatchNormalization is folded)"
       for op in ("LayerNormalization", "InstanceNormalization", "GroupNormalization", "RMSNormalization",
                  "LpNormalization")},
    **{op: "Loihi 2 S4D needs ReLU activations, as the n-S4D model uses; smooth nonlinearities and "
           "gates (GELU, GLU, sigmoid, tanh) cannot be mapped"
       for op in ("Erf", "Gelu", "Sigmoid", "Tanh", "Softplus", "Elu", "Selu", "HardSigmoid", "HardSwish",
                  "Mish", "LeakyRelu", "PRelu", "Exp", "Log", "Sqrt", "Pow", "Softmax", "LogSoftmax")},
    "Split": "splits an activation (the gate of a GLU); Loihi 2 S4D needs ReLU activations, as the "
             "n-S4D model uses, and gates cannot be mapped",
}


def supported_ops() -> list[str]:
    return sorted({op for dom, op in HANDLERS if dom == ""} |
                  {f"{dom}.{op}" for dom, op in HANDLERS if dom})


def unsupported(node: onnx.NodeProto, why: str | None = None) -> UnsupportedOpError:
    why = why or _WHY.get(node.op_type, "no handler for this op")
    return UnsupportedOpError(f"{where(node)}{torch_module(node)}: {why}; supported ops: {', '.join(supported_ops())}")


def _pattern(node: onnx.NodeProto, what: str) -> UnsupportedPatternError:
    return UnsupportedPatternError(f"{where(node)}{torch_module(node)}: {what}")


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _const(fe: Frontend, node: onnx.NodeProto, v: Value | None, what: str) -> np.ndarray:
    if isinstance(v, Const):
        return v.value
    # Computed from the input's shape but the same at every batch size (the
    # time length TorchScript reads with Shape/Gather): a constant of the model.
    if isinstance(v, Sym) and all(np.shape(a) == np.shape(v.values[0]) and np.array_equal(a, v.values[0])
                                  for a in v.values[1:]):
        return np.asarray(v.values[0])
    raise _pattern(node, f"{what} must be a constant")


def _int_const(fe: Frontend, node: onnx.NodeProto, v: Value | None, what: str) -> np.ndarray:
    """A constant integer vector (pads, axes, indices, shapes)."""
    c = np.asarray(_const(fe, node, v, what))
    if c.dtype.kind not in "iu":
        raise _pattern(node, f"{what} must be integers, got dtype {c.dtype}")
    return c.astype(np.int64)


def _act(node: onnx.NodeProto, ins: list, lo: int = 1, hi: int | None = None) -> Act:
    """The activation a handler reads as its first input, after checking the
    input count is in [lo, hi] and that no other input is an activation."""
    hi = lo if hi is None else hi
    if not lo <= len(ins) <= hi:
        raise _pattern(node, f"has {len(ins)} inputs; {node.op_type} takes "
                             f"{lo if lo == hi else f'{lo} to {hi}'}")
    if not ins or not isinstance(ins[0], Act):
        raise _pattern(node, "the activation must be its first input")
    if any(isinstance(v, Act) for v in ins[1:]):
        raise _pattern(node, "reads an activation where a constant is expected")
    return ins[0]


def _ints_attr(node: onnx.NodeProto, name: str, default=None) -> list[int] | None:
    v = _attr(node, name, default)
    if v is None:
        return None
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, int) for x in v):
        raise _pattern(node, f"attribute {name} must be a list of integers, got {v!r}")
    return list(v)


def _int_attr(node: onnx.NodeProto, name: str, default: int) -> int:
    v = _attr(node, name, default)
    if not isinstance(v, int):
        raise _pattern(node, f"attribute {name} must be an integer, got {v!r}")
    return v


def _axis(node: onnx.NodeProto, a: int, rank: int, what: str = "axis") -> int:
    if not -rank <= int(a) < rank:
        raise _pattern(node, f"{what} {a} is out of range for a rank-{rank} tensor")
    return int(a) % rank


def _only_act(node: onnx.NodeProto, ins: list) -> Act:
    acts = [v for v in ins if isinstance(v, Act)]
    if len(acts) != 1:
        raise _pattern(node, "combines two activations in a way s4dc cannot map")
    return acts[0]


def _feature_vector(node: onnx.NodeProto, act: Act, c: np.ndarray, what: str) -> np.ndarray:
    """A constant broadcast against `act`, as one value per feature."""
    shape = act.shape(PROBE_BATCHES[0])
    if c.dtype.kind not in "fiub":
        raise _pattern(node, f"{what} has dtype {c.dtype}; a number per feature is expected")
    try:
        full = np.broadcast_to(c, np.broadcast_shapes(c.shape, shape))
    except ValueError:
        raise _pattern(node, f"{what} of shape {c.shape} does not broadcast to the activation {shape}") from None
    if full.shape != shape:
        raise _pattern(node, f"{what} of shape {c.shape} would change the activation's shape {shape}")
    f = act.axis_of("F")
    rows = full.reshape(-1, 1) if f is None else np.moveaxis(full, f, -1).reshape(-1, shape[f])
    if not np.all(rows == rows[:1]):
        raise _pattern(node, f"{what} varies along the batch or time axis; only per-feature constants map")
    return np.broadcast_to(rows[0], (act.features,)).astype(np.float64)


def _affine(fe: Frontend, node: onnx.NodeProto, act: Act, w: np.ndarray, b: np.ndarray,
            weight_name: str | None = None) -> Act:
    """Emit y = w @ x + b on the feature axis; w is (out, in). A weight that
    came from a DequantizeLinear carries its grid along (attrs['qat'])."""
    hint = fe.hints.get(weight_name) if weight_name else None
    t = fe.emit(node, "affine", [act.tensor], w.shape[0], act.sequence,
                params={"weight": np.asarray(w, np.float64), "bias": np.asarray(b, np.float64)},
                attrs={"qat": {"weight_bits": hint["bits"], "weight_exp": hint["exp"]}}
                if hint and hint["exp"] is not None else None)
    return Act(t, act.with_f() if w.shape[0] != 1 else act.axes, w.shape[0], act.time)


def _no_pad(node: onnx.NodeProto, act: Act) -> None:
    if act.pad:
        raise _pattern(node, "reads a zero-padded activation; only a Conv may follow a Pad")
    _no_tail(node, act)


def _no_tail(node: onnx.NodeProto, act: Act) -> None:
    if act.tail:
        raise _pattern(node, f"reads a convolution's output padded by {act.tail} steps on the right; only a Slice "
                             f"back to its first {act.time} steps may follow it")


# --- pass-through ops --------------------------------------------------------
@handles("Identity", "Dropout")
def _identity(fe, node, ins):
    return [ins[0]] + ([None] * (len(node.output) - 1))


@handles("Cast", "CastLike")
def _cast(fe, node, ins):
    if isinstance(ins[0], Const):  # CastLike(constant, activation): dtype only
        return [Const(ins[0].value.astype(np.float32))]
    to = _attr(node, "to")
    if node.op_type == "Cast" and to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                                             onnx.TensorProto.FLOAT16):
        raise _pattern(node, "casts an activation to a non-float type")
    return [ins[0]]


@handles("Shape")
def _shape(fe, node, ins):
    act = ins[0]
    start, end = _attr(node, "start", 0), _attr(node, "end", None)
    return [Sym(tuple(np.array(act.shape(b)[start:end], np.int64) for b in PROBE_BATCHES))]


# --- layout ----------------------------------------------------------------
@handles("Transpose")
def _transpose(fe, node, ins):
    act = _act(node, ins)
    _no_pad(node, act)
    perm = _ints_attr(node, "perm") or list(range(len(act.axes)))[::-1]
    if sorted(perm) != list(range(len(act.axes))):
        raise _pattern(node, f"perm {perm} is not a permutation of the {len(act.axes)} axes of {act.axes}")
    return [Act(act.tensor, tuple(act.axes[p] for p in perm), act.features, act.time)]


def _reshape_to(node: onnx.NodeProto, act: Act, targets: tuple[tuple[int, ...], tuple[int, ...]]) -> Act:
    """Relabel `act` for a reshape whose output shape at the two probe batch
    sizes is `targets`. Only inserting or removing singleton axes maps."""
    _no_pad(node, act)
    ins = [act.shape(b) for b in PROBE_BATCHES]
    axes = act.with_f()
    keep = [(lab, ins[0][i], ins[1][i]) for i, lab in enumerate(axes) if ins[0][i] != 1 or ins[1][i] != 1]
    outs = [(i, targets[0][i], targets[1][i]) for i in range(len(targets[0]))
            if targets[0][i] != 1 or targets[1][i] != 1]
    if len(keep) != len(outs) or any((k[1], k[2]) != (o[1], o[2]) for k, o in zip(keep, outs)):
        raise _pattern(node, f"reshapes {tuple(_dims(axes, act))} to {tuple(targets[0])} at batch "
                             f"{PROBE_BATCHES[0]}, merging or splitting batch/time/feature axes")
    labels = ["1"] * len(targets[0])
    for (lab, _, _), (i, _, _) in zip(keep, outs):
        labels[i] = lab
    return Act(act.tensor, tuple(labels), act.features, act.time)


def _dims(axes, act):
    return [{"B": "batch", "T": act.time, "F": act.features, "1": 1}[a] for a in axes]


def _resolve_reshape(node: onnx.NodeProto, shape_in: tuple[int, ...], target: np.ndarray,
                     allowzero: int) -> tuple[int, ...]:
    t = [int(x) for x in np.asarray(target).reshape(-1)]
    if not allowzero:
        if any(x == 0 for x in t[len(shape_in):]):
            raise _pattern(node, f"reshape target {t} copies (0) an axis the {len(shape_in)}-axis input lacks")
        t = [shape_in[i] if x == 0 else x for i, x in enumerate(t)]
    if t.count(-1) > 1 or any(x < -1 for x in t):
        raise _pattern(node, f"reshape target {t} is not a valid shape")
    if -1 in t:
        known = int(np.prod([x for x in t if x != -1]))
        t[t.index(-1)] = int(np.prod(shape_in)) // max(known, 1)
    if int(np.prod(t)) != int(np.prod(shape_in)):
        raise _pattern(node, f"cannot reshape {tuple(shape_in)} ({int(np.prod(shape_in))} values) to {tuple(t)}")
    return tuple(t)


@handles("Reshape")
def _reshape(fe, node, ins):
    if len(ins) == 2 and isinstance(ins[1], Act):
        raise _pattern(node, "reshape target computed from activation values")
    act = _act(node, ins, 2)
    tgt = ins[1]
    if tgt is None:
        raise _pattern(node, "has no shape input")
    vals = tgt.values if isinstance(tgt, Sym) else (tgt.value, tgt.value)
    if any(np.asarray(v).dtype.kind not in "iu" or np.ndim(v) > 1 for v in vals):
        raise _pattern(node, "the reshape target must be a 1-D integer tensor")
    az = _int_attr(node, "allowzero", 0)
    targets = tuple(_resolve_reshape(node, act.shape(b), v, az) for b, v in zip(PROBE_BATCHES, vals))
    return [_reshape_to(node, act, targets)]


def _axes_input(fe, node, ins, idx: int) -> list[int] | None:
    a = _ints_attr(node, "axes")
    if a is None and len(ins) > idx and ins[idx] is not None:
        a = _int_const(fe, node, ins[idx], "axes").reshape(-1).tolist()
    return None if a is None else [int(x) for x in a]


def _reshape_by(node: onnx.NodeProto, act: Act, target) -> list:
    """Reshape `act` to target(shape) at each probe batch size."""
    return [_reshape_to(node, act, tuple(tuple(target(act.shape(b))) for b in PROBE_BATCHES))]


@handles("Squeeze")
def _squeeze(fe, node, ins):
    act = _act(node, ins, 1, 2)
    axes = _axes_input(fe, node, ins, 1)

    def target(s):
        ax = [_axis(node, a, len(s)) for a in axes] if axes is not None else [i for i, d in enumerate(s) if d == 1]
        if any(s[a] != 1 for a in ax):
            raise _pattern(node, f"squeezes axes {axes} of shape {tuple(s)}, which are not all of size 1")
        return (d for i, d in enumerate(s) if i not in ax)
    return _reshape_by(node, act, target)


@handles("Unsqueeze")
def _unsqueeze(fe, node, ins):
    act = _act(node, ins, 1, 2)
    axes = _axes_input(fe, node, ins, 1)
    if axes is None:
        raise _pattern(node, "has no axes")

    def target(s):
        s = list(s)
        n = len(s) + len(axes)
        at = sorted(_axis(node, x, n) for x in axes)
        if len(set(at)) != len(at):
            raise _pattern(node, f"axes {axes} repeat an axis")
        for a in at:
            s.insert(a, 1)
        return s
    return _reshape_by(node, act, target)


@handles("Flatten")
def _flatten(fe, node, ins):
    act = _act(node, ins)
    ax = _int_attr(node, "axis", 1)

    def target(s):
        if not -len(s) <= ax <= len(s):
            raise _pattern(node, f"axis {ax} is out of range for a rank-{len(s)} tensor")
        k = ax % len(s) if ax < 0 else ax
        return int(np.prod(s[:k])), int(np.prod(s[k:]))
    return _reshape_by(node, act, target)


# --- affine maps ---------------------------------------------------------------
def _matmul_const(fe: Frontend, node: onnx.NodeProto, act: Act, w: np.ndarray, weight_input: int) -> Act:
    """MatMul of an activation by the constant node.input[weight_input],
    as y = w @ x on the feature axis (w is (out, in)): act @ W mixes the
    last axis (w = W^T), W @ act the one before it (w = W)."""
    _no_pad(node, act)
    axis = len(act.axes) - (1 if weight_input == 1 else 2)
    if act.axis_of("F") != axis or w.shape[1] != act.features:
        raise _pattern(node, f"multiplies axis {axis} of a {act.axes} activation; only the feature axis may be mixed")
    return _affine(fe, node, act, w, np.zeros(w.shape[0]), node.input[weight_input])


@handles("MatMul")
def _matmul(fe, node, ins):
    if len(ins) != 2:
        raise _pattern(node, f"has {len(ins)} inputs; MatMul takes 2")
    a, b = ins
    for v in (a, b):
        if isinstance(v, Const) and v.value.dtype.kind not in "fiu":
            raise _pattern(node, f"multiplies by a constant of dtype {v.value.dtype}")
    if isinstance(a, Act) and isinstance(b, Const) and b.value.ndim == 2:
        return [_matmul_const(fe, node, a, b.value.T, 1)]
    if isinstance(b, Act) and isinstance(a, Const) and a.value.ndim == 2:
        return [_matmul_const(fe, node, b, a.value, 0)]
    if isinstance(a, Act) and isinstance(b, Act):
        raise unsupported(node, "multiplies two activations (attention or gating), which Loihi 2 S4D cannot map")
    raise _pattern(node, "multiplies by a constant of rank other than 2")


@handles("Gemm")
def _gemm(fe, node, ins):
    if not isinstance(ins[0], Act) or _attr(node, "transA", 0):
        raise _pattern(node, "only Gemm(activation, constant weight) with transA=0 maps")
    a = _act(node, ins, 2, 3)
    b = ins[1]
    c = ins[2] if len(ins) > 2 else None
    _no_pad(node, a)
    w = _const(fe, node, b, "weight")
    if w.ndim != 2 or w.dtype.kind not in "fiu":
        raise _pattern(node, f"weight of shape {w.shape} dtype {w.dtype}; a 2-D float matrix is expected")
    alpha, beta = _attr(node, "alpha", 1.0), _attr(node, "beta", 1.0)
    if not isinstance(alpha, float) or not isinstance(beta, float):
        raise _pattern(node, "alpha and beta must be floats")
    w = (w if _attr(node, "transB", 0) else w.T) * alpha
    if a.axis_of("F") != len(a.axes) - 1:
        raise _pattern(node, "Gemm must read (batch, features)")
    if w.shape[1] != a.features:
        raise _pattern(node, f"weight maps {w.shape[1]} features, the input has {a.features}")
    bias = np.zeros(w.shape[0])
    if c is not None:
        cv = _const(fe, node, c, "bias")
        try:
            bias = np.broadcast_to(cv, (w.shape[0],)) * beta
        except ValueError:
            raise _pattern(node, f"bias of shape {cv.shape} does not broadcast to ({w.shape[0]},)") from None
    return [_affine(fe, node, a, w, bias, node.input[1])]


@handles("Add", "Sub", "Mul", "Div")
def _elementwise(fe, node, ins):
    if len(ins) != 2 or any(v is None for v in ins):
        raise _pattern(node, f"has {len(ins)} inputs; {node.op_type} takes 2")
    a, b = ins
    op = node.op_type
    if isinstance(a, Act) and isinstance(b, Act):
        if op != "Add":
            raise unsupported(node, f"{op} of two activations (gating, as in GLU) cannot be mapped; "
                                    "Loihi 2 S4D needs ReLU")
        _no_pad(node, a)
        _no_pad(node, b)
        if a.with_f() != b.with_f() or a.features != b.features:
            raise _pattern(node, f"adds activations of different layouts {a.axes} and {b.axes}")
        t = fe.emit(node, "add", [a.tensor, b.tensor], a.features, a.sequence)
        return [Act(t, a.with_f(), a.features, a.time)]
    act, c_first = (a, False) if isinstance(a, Act) else (b, True)
    _no_pad(node, act)
    c = _feature_vector(node, act, _const(fe, node, b if not c_first else a, "operand"), "constant")
    eye = np.eye(act.features)
    if op == "Add":
        return [_affine(fe, node, act, eye, c)]
    if op == "Sub":
        return [_affine(fe, node, act, -eye if c_first else eye, c if c_first else -c)]
    if op == "Mul":
        return [_affine(fe, node, act, np.diag(c), np.zeros(act.features))]
    if c_first:
        raise unsupported(node, "divides by an activation, which cannot be mapped")
    if np.any(c == 0):
        raise _pattern(node, "divides by zero")
    return [_affine(fe, node, act, np.diag(1.0 / c), np.zeros(act.features))]


@handles("BatchNormalization")
def _batchnorm(fe, node, ins):
    act = _act(node, ins, 5)
    _no_pad(node, act)
    if _attr(node, "training_mode", 0):
        raise _pattern(node, "BatchNormalization in training mode; export the model in eval mode")
    if act.axis_of("F") != 1:
        raise _pattern(node, f"normalizes axis 1 of a {act.axes} activation, not the feature axis")
    scale, bias, mean, var = (np.asarray(_const(fe, node, v, n)) for v, n in zip(ins[1:5], ("scale", "B", "mean", "var")))
    for v, n in zip((scale, bias, mean, var), ("scale", "B", "mean", "var")):
        if v.shape != (act.features,) or v.dtype.kind not in "fiu":
            raise _pattern(node, f"{n} has shape {v.shape} dtype {v.dtype}; ({act.features},) floats expected")
    eps = _attr(node, "epsilon", 1e-5)
    if not isinstance(eps, float) or np.any(var + eps <= 0):
        raise _pattern(node, "variance + epsilon must be positive")
    s = scale / np.sqrt(var + eps)
    return [_affine(fe, node, act, np.diag(s), bias - s * mean)] + [None] * (len(node.output) - 1)


@handles("Relu")
def _relu(fe, node, ins):
    act = _act(node, ins)
    _no_pad(node, act)
    t = fe.emit(node, "relu", [act.tensor], act.features, act.sequence)
    return [Act(t, act.axes, act.features, act.time)]


# --- quantization-aware training (QDQ) ----------------------------------------
@handles("QuantizeLinear")
def _quantize_linear(fe, node, ins):
    """Fake quantization on an activation: the float path passes it through;
    the grid (power-of-two scale, zero point 0) is kept for the quantizer."""
    act = _act(node, ins, 2, 3)
    scale = _const(fe, node, ins[1], "y_scale")
    zp = _const(fe, node, ins[2], "y_zero_point") if len(ins) > 2 and ins[2] is not None else np.zeros(1, np.uint8)
    if scale.dtype.kind != "f" or zp.dtype.kind not in "iu":
        raise _pattern(node, f"y_scale dtype {scale.dtype} / y_zero_point dtype {zp.dtype}: float and integer expected")
    from s4dc.frontend.onnx_prep import qdq_hint
    fe.hints[node.output[0]] = qdq_hint(scale, zp, zp.dtype) or {"exp": None}
    return [act]


@handles("DequantizeLinear")
def _dequantize_linear(fe, node, ins):
    act = _act(node, ins, 2, 3)
    hint = fe.hints.get(node.input[0])
    if hint is None:
        raise _pattern(node, "dequantizes an activation that no QuantizeLinear quantized")
    if hint.get("exp") is not None:
        from s4dc.ir.tensor import FixedPoint
        fe.graph.tensors[act.tensor].fmt = FixedPoint(hint["bits"], hint["exp"])
    return [act]


# --- convolution and padding -------------------------------------------------------------
@handles("Pad")
def _pad(fe, node, ins):
    act = _act(node, ins, 1, 4)
    _no_tail(node, act)  # a Pad may follow a Pad
    pads = _int_const(fe, node, ins[1], "pads").reshape(-1) if len(ins) > 1 and ins[1] is not None \
        else np.array(_ints_attr(node, "pads") or [], np.int64)
    mode = _attr(node, "mode", b"constant")
    mode = mode.decode(errors="replace") if isinstance(mode, bytes) else str(mode)
    value = _const(fe, node, ins[2], "constant_value") if len(ins) > 2 and ins[2] is not None else np.zeros(1)
    rank = len(act.axes)
    axes = list(range(rank))
    if len(ins) > 3 and ins[3] is not None:
        axes = [_axis(node, a, rank) for a in _int_const(fe, node, ins[3], "axes").reshape(-1)]
    if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes):
        raise _pattern(node, f"pads {pads.tolist()} do not give a begin and an end for each of {len(axes)} axes")
    full = np.zeros(2 * rank, int)
    for k, a in enumerate(axes):
        full[a], full[a + rank] = pads[k], pads[k + len(axes)]
    t = act.axis_of("T")
    others = [i for i in range(2 * rank) if i != t]
    if mode != "constant" or np.any(value != 0) or t is None or full[t + rank] != 0 or np.any(full[others] != 0):
        raise _pattern(node, f"pads {full.tolist()} (mode {mode}); only zero padding on the left of the "
                             "time axis (a causal convolution) maps")
    return [Act(act.tensor, act.axes, act.features, act.time, act.pad + int(full[t]))]


@handles("Conv")
def _conv(fe, node, ins):
    act = _act(node, ins, 2, 3)
    _no_tail(node, act)  # a pending pad is its own (read below)
    w = _const(fe, node, ins[1], "weight")
    if w.ndim != 3 or len(act.axes) != 3:
        raise _pattern(node, "only 1-D convolutions over time map")
    if w.dtype.kind not in "fiu" or 0 in w.shape:
        raise _pattern(node, f"weight of shape {w.shape} dtype {w.dtype}; a non-empty float kernel is expected")
    bias = _const(fe, node, ins[2], "bias") if len(ins) > 2 and ins[2] is not None else np.zeros(w.shape[0])
    if bias.shape != (w.shape[0],) or bias.dtype.kind not in "fiu":
        raise _pattern(node, f"bias of shape {bias.shape}; ({w.shape[0]},) floats expected")
    if act.with_f()[1] != "F" or act.axes[2] != "T":
        raise _pattern(node, f"convolves a {act.axes} activation; expected (batch, channels, time)")
    if any(s != 1 for s in _ints_attr(node, "strides", [1])) or any(d != 1 for d in _ints_attr(node, "dilations", [1])):
        raise _pattern(node, "strided or dilated convolution over time")
    ks = _ints_attr(node, "kernel_shape")
    if ks is not None and ks != [w.shape[2]]:
        raise _pattern(node, f"kernel_shape {ks} disagrees with the weight's {w.shape[2]} taps")
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    if auto_pad not in (b"NOTSET", "NOTSET"):
        raise _pattern(node, f"auto_pad {auto_pad!r}; export with explicit pads")
    pads = _ints_attr(node, "pads", [0, 0])
    group = _int_attr(node, "group", 1)
    if len(pads) != 2 or group < 1:
        raise _pattern(node, f"pads {pads} / group {group}: a 1-D convolution has two pads and group >= 1")
    cout, cin_g, k = w.shape
    left, right = act.pad + pads[0], pads[1]
    if k == 1:
        if left or right:
            raise _pattern(node, "pads a pointwise (kernel 1) convolution")
        if group == 1:
            if cin_g != act.features:
                raise _pattern(node, f"weight reads {cin_g} channels, the input has {act.features}")
            weight = w[:, :, 0]
        elif group == act.features == cout and cin_g == 1:
            weight = np.diag(w[:, 0, 0])
        else:
            raise _pattern(node, f"grouped pointwise convolution with group={group}")
        return [_affine(fe, node, Act(act.tensor, act.axes, act.features, act.time), weight, bias,
                        node.input[1] if group == 1 else None)]
    depthwise = group == act.features == cout and cin_g == 1
    if group == 1 and cin_g != act.features:
        raise _pattern(node, f"weight reads {cin_g} channels, the input has {act.features}")
    if not (depthwise or group == 1):
        raise _pattern(node, f"a convolution over time with kernel {k} must be depthwise "
                             f"(group = channels = {act.features}) or full (group 1), got group={group}, out={cout}")
    if left != k - 1 or right not in (0, k - 1):
        raise _pattern(node, f"time padding (left {left}, right {right}) for kernel length {k} is not causal; "
                             f"an S4D convolution pads {k - 1} steps on the left (and on the right only for a "
                             "Slice back to the input's length to cut off)")
    # Conv is cross-correlation: flip the taps to impulse-response order.
    if depthwise:
        op, params = "conv", {"kernel": w[:, 0, ::-1], "D": np.zeros(cout)}
    else:  # a MIMO kernel (H_out, H_in, k); the realize pass fits it by a MIMO diagonal state space
        op, params = "mconv", {"kernel": w[:, :, ::-1]}
    params = {k_: np.ascontiguousarray(v, np.float64) for k_, v in params.items()}
    t = fe.emit(node, op, [act.tensor], cout, True, params={**params, "bias": np.asarray(bias, np.float64)})
    # Beyond k steps the realized state space follows the system, not this
    # truncated kernel: compile and run say so (s4dc.network.check_time_length).
    fe.graph.meta.setdefault("kernel_lengths", {})[t] = int(k)
    return [Act(t, act.axes, cout, act.time, tail=right)]


# --- time readouts ----------------------------------------------------------------
def _readout(fe, node, act: Act, mode: str, keep_axis: bool) -> Act:
    t_ax = act.axis_of("T")
    t = fe.emit(node, "readout", [act.tensor], act.features, False, attrs={"mode": mode})
    axes = list(act.axes)
    if keep_axis:
        axes[t_ax] = "1"
    else:
        del axes[t_ax]
    return Act(t, tuple(axes), act.features, act.time)


@handles("Gather")
def _gather(fe, node, ins):
    act = _act(node, ins, 2)
    idx = _int_const(fe, node, ins[1], "indices")
    _no_pad(node, act)
    axis = _axis(node, _int_attr(node, "axis", 0), len(act.axes))
    if act.axes[axis] != "T" or idx.size != 1 or int(idx.reshape(-1)[0]) % act.time != act.time - 1:
        raise _pattern(node, f"gathers index {idx.reshape(-1).tolist()} on axis {axis} of {act.axes}; "
                             "only the last time step can be selected")
    return [_readout(fe, node, act, "last", keep_axis=idx.ndim == 1)]


@handles("Slice")
def _slice(fe, node, ins):
    act = _act(node, ins, 3, 5)
    if act.pad:
        _no_pad(node, act)
    starts, ends = (_int_const(fe, node, v, n).reshape(-1) for v, n in zip(ins[1:3], ("starts", "ends")))
    rank = len(act.axes)
    axes = _int_const(fe, node, ins[3], "axes").reshape(-1) if len(ins) > 3 and ins[3] is not None \
        else np.arange(len(starts))
    steps = _int_const(fe, node, ins[4], "steps").reshape(-1) if len(ins) > 4 and ins[4] is not None \
        else np.ones(len(starts), int)
    if not len(starts) == len(ends) == len(axes) == len(steps) or np.any(steps == 0):
        raise _pattern(node, f"starts {starts.tolist()}, ends {ends.tolist()}, axes {axes.tolist()}, steps "
                             f"{steps.tolist()}: lengths differ or a step is 0")
    shape = act.shape(PROBE_BATCHES[0])  # with the tail of a right-padded Conv, which this Slice must cut off
    last, cut = False, not act.tail
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = _axis(node, a, rank)
        rng = range(*slice(int(s), int(e), int(st)).indices(shape[a]))
        if act.tail and act.axes[a] == "T" and list(rng) == list(range(act.time)):
            cut = True
            continue
        if len(rng) == shape[a] and st == 1:
            continue  # whole axis
        if act.axes[a] == "T" and list(rng) == [act.time - 1]:
            last = cut = True
            continue
        raise _pattern(node, f"slices axis {a} ({act.axes[a]}) to {rng.start}:{rng.stop}:{rng.step}; "
                             "only the whole axis or the last time step can be selected")
    if not cut:
        raise _pattern(node, f"reads a convolution's output padded by {act.tail} steps on the right and does not "
                             f"cut it back to its first {act.time} steps")
    act = Act(act.tensor, act.axes, act.features, act.time)
    return [_readout(fe, node, act, "last", keep_axis=True) if last else act]


@handles("ReduceMean")
def _reduce_mean(fe, node, ins):
    act = _act(node, ins, 1, 2)
    _no_pad(node, act)
    axes = _axes_input(fe, node, ins, 1)
    keep = bool(_attr(node, "keepdims", 1))
    t = act.axis_of("T")
    if axes is None or [a % len(act.axes) for a in axes] != [t]:
        raise _pattern(node, f"averages axes {axes} of {act.axes}; only the mean over time maps")
    return [_readout(fe, node, act, "mean", keep_axis=keep)]


# Register the handlers that live in their own modules.
from s4dc.frontend import canonical as _canonical  # noqa: E402,F401
from s4dc.frontend import scan_lowering as _scan  # noqa: E402,F401
