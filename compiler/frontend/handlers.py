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
from s4dc.frontend.values import PROBE_BATCHES, Act, Const, Sym, Value

Handler = Callable[[Frontend, onnx.NodeProto, list], list]
HANDLERS: dict[tuple[str, str], Handler] = {}


def handles(*ops: str, domain: str = "") -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for op in ops:
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
    return UnsupportedOpError(f"{where(node)}: {why}; supported ops: {', '.join(supported_ops())}")


def _pattern(node: onnx.NodeProto, what: str) -> UnsupportedPatternError:
    return UnsupportedPatternError(f"{where(node)}: {what}")


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _const(fe: Frontend, node: onnx.NodeProto, v: Value | None, what: str) -> np.ndarray:
    if isinstance(v, Const):
        return v.value
    raise _pattern(node, f"{what} must be a constant")


def _only_act(node: onnx.NodeProto, ins: list) -> Act:
    acts = [v for v in ins if isinstance(v, Act)]
    if len(acts) != 1:
        raise _pattern(node, "combines two activations in a way s4dc cannot map")
    return acts[0]


def _feature_vector(node: onnx.NodeProto, act: Act, c: np.ndarray, what: str) -> np.ndarray:
    """A constant broadcast against `act`, as one value per feature."""
    shape = act.shape(PROBE_BATCHES[0])
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
    act = ins[0]
    _no_pad(node, act)
    perm = _attr(node, "perm") or list(range(len(act.axes)))[::-1]
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


def _resolve_reshape(shape_in: tuple[int, ...], target: np.ndarray, allowzero: int) -> tuple[int, ...]:
    t = [int(x) for x in target]
    if not allowzero:
        t = [shape_in[i] if x == 0 else x for i, x in enumerate(t)]
    if -1 in t:
        known = int(np.prod([x for x in t if x != -1]))
        t[t.index(-1)] = int(np.prod(shape_in)) // max(known, 1)
    return tuple(t)


@handles("Reshape")
def _reshape(fe, node, ins):
    act, tgt = ins[0], ins[1]
    if isinstance(tgt, Act):
        raise _pattern(node, "reshape target computed from activation values")
    vals = tgt.values if isinstance(tgt, Sym) else (tgt.value, tgt.value)
    az = _attr(node, "allowzero", 0)
    targets = tuple(_resolve_reshape(act.shape(b), v, az) for b, v in zip(PROBE_BATCHES, vals))
    return [_reshape_to(node, act, targets)]


def _axes_input(fe, node, ins, idx: int) -> list[int] | None:
    a = _attr(node, "axes")
    if a is None and len(ins) > idx and ins[idx] is not None:
        a = _const(fe, node, ins[idx], "axes").reshape(-1).tolist()
    return None if a is None else [int(x) for x in a]


def _reshape_by(node: onnx.NodeProto, act: Act, target) -> list:
    """Reshape `act` to target(shape) at each probe batch size."""
    return [_reshape_to(node, act, tuple(tuple(target(act.shape(b))) for b in PROBE_BATCHES))]


@handles("Squeeze")
def _squeeze(fe, node, ins):
    axes = _axes_input(fe, node, ins, 1)

    def target(s):
        ax = [a % len(s) for a in axes] if axes is not None else [i for i, d in enumerate(s) if d == 1]
        return (d for i, d in enumerate(s) if i not in ax)
    return _reshape_by(node, ins[0], target)


@handles("Unsqueeze")
def _unsqueeze(fe, node, ins):
    axes = _axes_input(fe, node, ins, 1)

    def target(s):
        s = list(s)
        for a in sorted(x % (len(s) + len(axes)) for x in axes):
            s.insert(a, 1)
        return s
    return _reshape_by(node, ins[0], target)


@handles("Flatten")
def _flatten(fe, node, ins):
    ax = _attr(node, "axis", 1)

    def target(s):
        k = ax % len(s) if ax < 0 else ax
        return int(np.prod(s[:k])), int(np.prod(s[k:]))
    return _reshape_by(node, ins[0], target)


# --- affine maps ---------------------------------------------------------------
@handles("MatMul")
def _matmul(fe, node, ins):
    a, b = ins
    if isinstance(a, Act) and isinstance(b, Const) and b.value.ndim == 2:
        _no_pad(node, a)
        f = a.axis_of("F")
        if f != len(a.axes) - 1 or b.value.shape[0] != a.features:
            raise _pattern(node, f"multiplies axis {len(a.axes) - 1} of a {a.axes} activation; "
                                 "only the feature axis may be mixed")
        return [_affine(fe, node, a, b.value.T, np.zeros(b.value.shape[1]), node.input[1])]
    if isinstance(b, Act) and isinstance(a, Const) and a.value.ndim == 2:
        _no_pad(node, b)
        f = b.axis_of("F")
        if f != len(b.axes) - 2 or a.value.shape[1] != b.features:
            raise _pattern(node, f"multiplies axis {len(b.axes) - 2} of a {b.axes} activation; "
                                 "only the feature axis may be mixed")
        return [_affine(fe, node, b, a.value, np.zeros(a.value.shape[0]), node.input[0])]
    if isinstance(a, Act) and isinstance(b, Act):
        raise unsupported(node, "multiplies two activations (attention or gating), which Loihi 2 S4D cannot map")
    raise _pattern(node, "multiplies by a constant of rank other than 2")


@handles("Gemm")
def _gemm(fe, node, ins):
    a, b = ins[0], ins[1]
    c = ins[2] if len(ins) > 2 else None
    if not isinstance(a, Act) or _attr(node, "transA", 0):
        raise _pattern(node, "only Gemm(activation, constant weight) with transA=0 maps")
    _no_pad(node, a)
    w = _const(fe, node, b, "weight")
    w = (w if _attr(node, "transB", 0) else w.T) * _attr(node, "alpha", 1.0)
    bias = np.zeros(w.shape[0])
    if c is not None:
        bias = np.broadcast_to(_const(fe, node, c, "bias"), (w.shape[0],)) * _attr(node, "beta", 1.0)
    if a.axis_of("F") != len(a.axes) - 1:
        raise _pattern(node, "Gemm must read (batch, features)")
    return [_affine(fe, node, a, w, bias, node.input[1])]


@handles("Add", "Sub", "Mul", "Div")
def _elementwise(fe, node, ins):
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
    return [_affine(fe, node, act, np.diag(1.0 / c), np.zeros(act.features))]


@handles("BatchNormalization")
def _batchnorm(fe, node, ins):
    act = ins[0]
    _no_pad(node, act)
    if _attr(node, "training_mode", 0):
        raise _pattern(node, "BatchNormalization in training mode; export the model in eval mode")
    if act.axis_of("F") != 1:
        raise _pattern(node, f"normalizes axis 1 of a {act.axes} activation, not the feature axis")
    scale, bias, mean, var = (_const(fe, node, v, n) for v, n in zip(ins[1:5], ("scale", "B", "mean", "var")))
    s = scale / np.sqrt(var + _attr(node, "epsilon", 1e-5))
    return [_affine(fe, node, act, np.diag(s), bias - s * mean)] + [None] * (len(node.output) - 1)


@handles("Relu")
def _relu(fe, node, ins):
    act = ins[0]
    _no_pad(node, act)
    t = fe.emit(node, "relu", [act.tensor], act.features, act.sequence)
    return [Act(t, act.axes, act.features, act.time)]


# --- quantization-aware training (QDQ) ----------------------------------------
@handles("QuantizeLinear")
def _quantize_linear(fe, node, ins):
    """Fake quantization on an activation: the float path passes it through;
    the grid (power-of-two scale, zero point 0) is kept for the quantizer."""
    act = ins[0]
    scale = _const(fe, node, ins[1], "y_scale")
    zp = _const(fe, node, ins[2], "y_zero_point") if len(ins) > 2 and ins[2] is not None else np.zeros(1, np.uint8)
    from s4dc.frontend.onnx_prep import qdq_hint
    fe.hints[node.output[0]] = qdq_hint(scale, zp, zp.dtype) or {"exp": None}
    return [act]


@handles("DequantizeLinear")
def _dequantize_linear(fe, node, ins):
    act = ins[0]
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
    act = ins[0]
    pads = _const(fe, node, ins[1], "pads").astype(int) if len(ins) > 1 and ins[1] is not None \
        else np.array(_attr(node, "pads"))
    mode = _attr(node, "mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = _const(fe, node, ins[2], "constant_value") if len(ins) > 2 and ins[2] is not None else np.zeros(1)
    rank = len(act.axes)
    axes = list(range(rank))
    if len(ins) > 3 and ins[3] is not None:
        axes = [int(a) % rank for a in _const(fe, node, ins[3], "axes")]
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
    act = ins[0]
    w = _const(fe, node, ins[1], "weight")
    bias = _const(fe, node, ins[2], "bias") if len(ins) > 2 and ins[2] is not None else np.zeros(w.shape[0])
    if w.ndim != 3 or len(act.axes) != 3:
        raise _pattern(node, "only 1-D convolutions over time map")
    if act.with_f()[1] != "F" or act.axes[2] != "T":
        raise _pattern(node, f"convolves a {act.axes} activation; expected (batch, channels, time)")
    if any(s != 1 for s in _attr(node, "strides", [1])) or any(d != 1 for d in _attr(node, "dilations", [1])):
        raise _pattern(node, "strided or dilated convolution over time")
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    if auto_pad not in (b"NOTSET", "NOTSET"):
        raise _pattern(node, f"auto_pad {auto_pad!r}; export with explicit pads")
    pads = _attr(node, "pads", [0, 0])
    group = _attr(node, "group", 1)
    cout, cin_g, k = w.shape
    left, right = act.pad + pads[0], pads[1]
    if k == 1:
        if left or right:
            raise _pattern(node, "pads a pointwise (kernel 1) convolution")
        if group == 1:
            weight = w[:, :, 0]
        elif group == act.features == cout and cin_g == 1:
            weight = np.diag(w[:, 0, 0])
        else:
            raise _pattern(node, f"grouped pointwise convolution with group={group}")
        return [_affine(fe, node, Act(act.tensor, act.axes, act.features, act.time), weight, bias,
                        node.input[1] if group == 1 else None)]
    if not (group == act.features == cout and cin_g == 1):
        raise _pattern(node, f"a convolution over time with kernel {k} must be depthwise "
                             f"(group = channels = {act.features}), got group={group}, out={cout}")
    if left != k - 1 or right != 0:
        raise _pattern(node, f"time padding (left {left}, right {right}) for kernel length {k} is not causal; "
                             f"an S4D convolution pads {k - 1} steps on the left only")
    kernel = w[:, 0, ::-1].astype(np.float64)  # Conv is cross-correlation: flip to impulse-response order
    t = fe.emit(node, "conv", [act.tensor], act.features, True,
                params={"kernel": np.ascontiguousarray(kernel), "D": np.zeros(cout),
                        "bias": np.asarray(bias, np.float64)})
    # Beyond k steps the realized state space follows the S4D, not this
    # truncated kernel: compile and run say so (s4dc.network.check_time_length).
    fe.graph.meta.setdefault("kernel_lengths", {})[t] = int(k)
    return [Act(t, act.axes, act.features, act.time)]


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
    act, idx = ins[0], _const(fe, node, ins[1], "indices")
    _no_pad(node, act)
    axis = _attr(node, "axis", 0) % len(act.axes)
    if act.axes[axis] != "T" or idx.size != 1 or int(idx.reshape(-1)[0]) % act.time != act.time - 1:
        raise _pattern(node, f"gathers index {idx.reshape(-1).tolist()} on axis {axis} of {act.axes}; "
                             "only the last time step can be selected")
    return [_readout(fe, node, act, "last", keep_axis=idx.ndim == 1)]


@handles("Slice")
def _slice(fe, node, ins):
    act = ins[0]
    _no_pad(node, act)
    starts, ends = (_const(fe, node, v, n).reshape(-1) for v, n in zip(ins[1:3], ("starts", "ends")))
    rank = len(act.axes)
    axes = _const(fe, node, ins[3], "axes").reshape(-1) if len(ins) > 3 and ins[3] is not None \
        else np.arange(len(starts))
    steps = _const(fe, node, ins[4], "steps").reshape(-1) if len(ins) > 4 and ins[4] is not None \
        else np.ones(len(starts), int)
    shape = act.shape(PROBE_BATCHES[0])
    last = False
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = int(a) % rank
        rng = range(*slice(int(s), int(e), int(st)).indices(shape[a]))
        if len(rng) == shape[a] and st == 1:
            continue  # whole axis
        if act.axes[a] == "T" and list(rng) == [act.time - 1]:
            last = True
            continue
        raise _pattern(node, f"slices axis {a} ({act.axes[a]}) to {rng.start}:{rng.stop}:{rng.step}; "
                             "only the whole axis or the last time step can be selected")
    return [_readout(fe, node, act, "last", keep_axis=True) if last else act]


@handles("ReduceMean")
def _reduce_mean(fe, node, ins):
    act = ins[0]
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
