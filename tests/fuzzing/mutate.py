"""Seeded mutations of ONNX models, at byte and protobuf level.

Every mutation takes a numpy Generator and a ModelProto (a private copy it may
change) and returns (description, model or raw bytes). The same generator
state gives the same mutant, so a case is reproduced from (seed, index).
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

Mutant = "onnx.ModelProto | bytes"
Mutation = Callable[[np.random.Generator, onnx.ModelProto], tuple[str, "onnx.ModelProto | bytes"]]

# Op types a node may be changed into: the ones s4dc handles, their near
# neighbours, and ones it refuses.
OP_POOL = ["Add", "Sub", "Mul", "Div", "MatMul", "Gemm", "Conv", "Pad", "Relu", "Transpose", "Reshape", "Squeeze",
           "Unsqueeze", "Flatten", "Gather", "Slice", "ReduceMean", "ReduceSum", "Identity", "Cast", "Shape",
           "Concat", "ConstantOfShape", "Expand", "Tile", "Range", "Constant", "BatchNormalization", "Scan",
           "Sigmoid", "Tanh", "LSTM", "Softmax", "Split", "Einsum", "Neg", "Abs", "Exp", "Where", "Dropout",
           "QuantizeLinear", "DequantizeLinear", "Resize", "NotAnOp"]
INT_EDGES = [0, 1, -1, 2, 3, -2, 7, 64, 2 ** 31 - 1, -(2 ** 31), 2 ** 62]
FLOAT_EDGES = [0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf"), -float("inf")]
DTYPES = [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.INT32,
          TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL, TensorProto.STRING, TensorProto.COMPLEX64,
          TensorProto.BFLOAT16]


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _all_graphs(model: onnx.ModelProto) -> list:
    """The main graph, function bodies, and subgraphs (Scan bodies): node containers."""
    out = [model.graph] + list(model.functions)
    stack = list(model.graph.node) + [n for f in model.functions for n in f.node]
    while stack:
        n = stack.pop()
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                out.append(a.g)
                stack.extend(a.g.node)
    return out


def _on_one(candidates: Callable[[onnx.ModelProto], list], fallback: Mutation) -> Callable[[Callable], Mutation]:
    """Decorator: the mutation edits one of `candidates(model)`, drawn before
    the edit's own draws; where there are none, `fallback` mutates instead."""
    def wrap(edit: Callable) -> Mutation:
        @functools.wraps(edit)
        def mutation(rng, model):
            items = candidates(model)
            if not items:
                return fallback(rng, model)
            return edit(rng, model, _pick(rng, items))
        return mutation
    return wrap


def _nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for g in _all_graphs(model) for n in g.node]


def _names(model: onnx.ModelProto) -> list[str]:
    g = model.graph
    return sorted({i.name for i in g.input} | {i.name for i in g.initializer} |
                  {o for n in g.node for o in n.output if o})


# --- byte level -------------------------------------------------------------------
def byte_flip(rng, model):
    data = bytearray(model.SerializeToString())
    k = int(rng.integers(1, 9))
    for i in rng.integers(0, len(data), k):
        data[int(i)] ^= int(rng.integers(1, 256))
    return f"byte_flip x{k}", bytes(data)


def truncate(rng, model):
    data = model.SerializeToString()
    cut = int(rng.integers(0, len(data)))
    return f"truncate at {cut}/{len(data)}", data[:cut]


# --- nodes ------------------------------------------------------------------------
def op_type(rng, model):
    nodes = _nodes(model)
    n = _pick(rng, nodes)
    new = _pick(rng, OP_POOL)
    old, n.op_type = n.op_type, new
    return f"op_type {n.name or n.output[0]}: {old} -> {new}", model


def add_attribute(rng, model):
    n = _pick(rng, _nodes(model))
    name = _pick(rng, ["axis", "axes", "perm", "keepdims", "group", "pads", "alpha", "to", "mode", "transB"])
    value = _pick(rng, [int(_pick(rng, INT_EDGES)), [0, 2, 1], [5], 0.5, "constant"])
    n.attribute.append(helper.make_attribute(name, value))
    return f"add attribute {n.op_type}.{name} = {value}", model


@_on_one(lambda model: [n for n in _nodes(model) if n.attribute], add_attribute)
def attribute(rng, model, n):
    a = _pick(rng, list(n.attribute))
    what = int(rng.integers(4))
    if what == 0:
        n.attribute.remove(a)
        return f"attribute {n.op_type}.{a.name}: removed", model
    if a.type == AttributeProto.INT:
        a.i = _pick(rng, INT_EDGES)
        return f"attribute {n.op_type}.{a.name} = {a.i}", model
    if a.type == AttributeProto.INTS:
        v = list(a.ints)
        kind = int(rng.integers(4))
        if kind == 0 and v:
            v.pop(int(rng.integers(len(v))))
        elif kind == 1:
            v.append(_pick(rng, INT_EDGES))
        elif kind == 2 and v:
            v[int(rng.integers(len(v)))] = _pick(rng, INT_EDGES)
        else:
            v = list(rng.permutation(v)) if v else [1]
        del a.ints[:]
        a.ints.extend(int(x) for x in v)
        return f"attribute {n.op_type}.{a.name} = {v}", model
    if a.type == AttributeProto.FLOAT:
        a.f = _pick(rng, FLOAT_EDGES)
        return f"attribute {n.op_type}.{a.name} = {a.f}", model
    if a.type == AttributeProto.STRING:
        a.s = _pick(rng, [b"", b"reflect", b"edge", b"SAME_UPPER", b"VALID", b"\xff\xfe"])
        return f"attribute {n.op_type}.{a.name} = {a.s!r}", model
    if a.type == AttributeProto.TENSOR:
        return _tensor_values(rng, a.t, f"attribute {n.op_type}.{a.name}"), model
    if a.type == AttributeProto.GRAPH:
        body = a.g
        if body.node:
            body.node.pop(int(rng.integers(len(body.node))))
        return f"attribute {n.op_type}.{a.name}: body node dropped", model
    n.attribute.remove(a)
    return f"attribute {n.op_type}.{a.name}: removed", model


@_on_one(lambda model: [n for n in model.graph.node if n.input], op_type)
def rewire(rng, model, n):
    k = int(rng.integers(len(n.input)))
    new = _pick(rng, _names(model) + ["", "no_such_value"])
    old, n.input[k] = n.input[k], new
    return f"rewire {n.name or n.output[0]}.input[{k}]: {old} -> {new}", model


@_on_one(lambda model: [n for n in model.graph.node if n.input and n.input[0] and n.output], op_type)
def bypass(rng, model, n):
    """Drop a node and let its readers read its first input instead."""
    g = model.graph
    src, dst = n.input[0], n.output[0]
    for m in g.node:
        for i, x in enumerate(m.input):
            if x == dst:
                m.input[i] = src
    for o in g.output:
        if o.name == dst:
            o.name = src
    g.node.remove(n)
    return f"bypass {n.name or dst} ({n.op_type})", model


def delete_node(rng, model):
    g = model.graph
    n = _pick(rng, list(g.node))
    g.node.remove(n)
    return f"delete {n.name or n.output[0]} ({n.op_type})", model


def swap_nodes(rng, model):
    g = model.graph
    if len(g.node) < 2:
        return op_type(rng, model)
    i, j = (int(x) for x in rng.choice(len(g.node), 2, replace=False))
    a, b = onnx.NodeProto(), onnx.NodeProto()
    a.CopyFrom(g.node[i])
    b.CopyFrom(g.node[j])
    g.node[i].CopyFrom(b)
    g.node[j].CopyFrom(a)
    return f"swap nodes {i} and {j}", model


@_on_one(lambda model: [n for n in _nodes(model) if n.op_type == "Constant"], attribute)
def drop_constant_value(rng, model, n):
    if rng.random() < 0.5:
        del n.attribute[:]
        return f"Constant {n.output[0]}: value dropped", model
    v = _pick(rng, [2 ** 31 - 1, -1, 0, 10 ** 6, 2 ** 40])
    arr = np.array([v] * max(1, int(rng.integers(1, 3))), np.int64)
    del n.attribute[:]
    n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(arr)))
    return f"Constant {n.output[0]} = {arr.tolist()}", model


# --- initializers -------------------------------------------------------------------
def _tensor_values(rng, t: TensorProto, what: str) -> str:
    arr = numpy_helper.to_array(t).copy()
    if arr.size == 0:
        return f"{what}: empty, unchanged"
    flat = arr.reshape(-1)
    idx = int(rng.integers(flat.size))
    if arr.dtype.kind == "f":
        v = _pick(rng, FLOAT_EDGES)
        if rng.random() < 0.3:
            flat[:] = v
        else:
            flat[idx] = v
    elif arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        v = _pick(rng, [x for x in INT_EDGES if info.min <= x <= info.max])
        flat[idx] = v
    else:
        return f"{what}: dtype {arr.dtype}, unchanged"
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    return f"{what}: value {v} at {idx}"


@_on_one(lambda model: list(model.graph.initializer), drop_constant_value)
def init_values(rng, model, t):
    return _tensor_values(rng, t, f"initializer {t.name}"), model


@_on_one(lambda model: [t for t in model.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE)],
         init_values)
def init_scale(rng, model, t):
    """A finite but extreme float initializer (zeros, tiny, huge, flipped):
    structurally valid, so it reaches the passes and the quantizer."""
    arr = numpy_helper.to_array(t).astype(np.float64)
    k = _pick(rng, [0.0, 1e-30, 1e-8, 1e8, 1e30, -1.0, 3.0])
    if arr.ndim and rng.random() < 0.4:
        arr[int(rng.integers(arr.shape[0]))] *= k
        what = f"initializer {t.name}: one row x {k}"
    else:
        arr = arr * k
        what = f"initializer {t.name}: x {k}"
    with np.errstate(over="ignore"):
        t.CopyFrom(numpy_helper.from_array(arr.astype(numpy_helper.to_array(t).dtype), t.name))
    return what, model


@_on_one(lambda model: list(model.graph.initializer), op_type)
def init_dtype(rng, model, t):
    """Declared type changed, data left as stored."""
    old, t.data_type = t.data_type, _pick(rng, DTYPES)
    return f"initializer {t.name}: data_type {old} -> {t.data_type}", model


@_on_one(lambda model: list(model.graph.initializer), op_type)
def init_shape(rng, model, t):
    dims = list(t.dims)
    kind = int(rng.integers(4))
    if kind == 0 and dims:
        dims.pop(int(rng.integers(len(dims))))
    elif kind == 1:
        dims.insert(int(rng.integers(len(dims) + 1)), int(_pick(rng, [1, 2, 0])))
    elif kind == 2 and dims:
        dims[int(rng.integers(len(dims)))] = int(_pick(rng, [0, 1, 3, 2 ** 31 - 1, -1]))
    else:
        dims = dims[::-1]
    del t.dims[:]
    t.dims.extend(dims)
    return f"initializer {t.name}: dims -> {dims}", model


@_on_one(lambda model: [t for t in model.graph.initializer if np.prod(t.dims) > 1], init_shape)
def init_reshape_consistent(rng, model, t):
    """Same values, another consistent shape (what a wrong export gives)."""
    arr = numpy_helper.to_array(t)
    shape = _pick(rng, [(arr.size,), (1, arr.size), (arr.size, 1)] + ([arr.shape[::-1]] if arr.ndim > 1 else []))
    t.CopyFrom(numpy_helper.from_array(arr.reshape(shape), t.name))
    return f"initializer {t.name}: reshaped {arr.shape} -> {shape}", model


# --- model level ----------------------------------------------------------------------
def opset(rng, model):
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = int(_pick(rng, [1, 7, 11, 12, 13, 17, 18, 21, 22, 23, 99]))
            return f"opset -> {o.version}", model
    return "no default opset", model


def input_type(rng, model):
    inits = {t.name for t in model.graph.initializer}
    inp = next((i for i in model.graph.input if i.name not in inits), None)
    if inp is None:
        return op_type(rng, model)
    tt = inp.type.tensor_type
    kind = int(rng.integers(5))
    dims = tt.shape.dim
    if kind == 0:
        tt.elem_type = int(_pick(rng, [TensorProto.INT64, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BOOL]))
        return f"input elem_type -> {tt.elem_type}", model
    if kind == 1 and len(dims) > 1:
        dims[1].Clear()
        dims[1].dim_param = "T"
        return "input time axis dynamic", model
    if kind == 2 and dims:
        d = dims[int(rng.integers(len(dims)))]
        d.Clear()
        d.dim_value = int(_pick(rng, [0, 1, 2, 5, 3000]))  # longer: minutes of calibration, not a bug
        return f"input dim -> {d.dim_value}", model
    if kind == 3:
        tt.shape.dim.add().dim_value = 1
        return "input rank + 1", model
    if dims:
        tt.shape.dim.pop()
    return "input rank - 1", model


def outputs(rng, model):
    g = model.graph
    if rng.random() < 0.5 and len(g.output) >= 1:
        g.output.pop()
        return "output removed", model
    inner = [o for n in g.node for o in n.output if o]
    name = _pick(rng, inner) if inner else "x"
    g.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return f"output added: {name}", model


@_on_one(lambda model: [f for f in model.functions if f.node], op_type)
def function_body(rng, model, f):
    """An edit inside a canonical function's body (op, wiring or a constant)."""
    n = _pick(rng, list(f.node))
    kind = int(rng.integers(3))
    if kind == 0:
        old, n.op_type = n.op_type, _pick(rng, ["Add", "Sub", "Mul", "Div", "Identity", "Neg", "Cos", "Sin"])
        return f"function {f.name}: {n.output[0]} {old} -> {n.op_type}", model
    if kind == 1 and n.input:
        names = sorted({x for m in f.node for x in m.output} | set(f.input))
        k = int(rng.integers(len(n.input)))
        n.input[k] = _pick(rng, names)
        return f"function {f.name}: {n.output[0]}.input[{k}] -> {n.input[k]}", model
    if n.op_type == "Constant" and n.attribute and n.attribute[0].type == AttributeProto.TENSOR:
        return f"function {f.name}: " + _tensor_values(rng, n.attribute[0].t, n.output[0]), model
    f.node.remove(n)
    return f"function {f.name}: dropped {n.output[0]} ({n.op_type})", model


MUTATIONS: list[tuple[Mutation, float]] = [
    (byte_flip, 1.0), (truncate, 0.5), (op_type, 1.5), (attribute, 2.0), (add_attribute, 0.5), (rewire, 1.5),
    (bypass, 1.0), (delete_node, 0.5), (swap_nodes, 0.3), (drop_constant_value, 1.0), (init_values, 1.5), (init_scale, 2.0),
    (init_dtype, 1.0), (init_shape, 1.0), (init_reshape_consistent, 0.7), (opset, 0.5), (input_type, 1.0),
    (outputs, 0.4), (function_body, 1.0),
]
_WEIGHTS = np.array([w for _, w in MUTATIONS]) / sum(w for _, w in MUTATIONS)


def mutate(rng: np.random.Generator, model: onnx.ModelProto) -> tuple[list[str], "onnx.ModelProto | bytes"]:
    """One to three mutations of a copy of `model`; byte-level ones end the chain."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    done: list[str] = []
    for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
        fn = MUTATIONS[int(rng.choice(len(MUTATIONS), p=_WEIGHTS))][0]
        try:
            what, out = fn(rng, m)
        except Exception as e:  # an earlier mutation left something this one cannot read
            done.append(f"{fn.__name__}: skipped ({type(e).__name__})")
            continue
        done.append(what)
        if isinstance(out, bytes):
            return done, out
        m = out
    return done, m
