"""Load and prepare an ONNX model before lowering: parse, check, inline
foreign local functions, fix the time length, infer shapes, fold constants.

Constant folding evaluates every node whose inputs are all constant with
onnx's reference evaluator, so chains such as the TorchScript exporter's
Constant/ConstantOfShape/Concat/Reshape/Slice/Cast pads collapse into plain
initializers before pattern matching starts.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from s4dc.errors import DynamicShapeError, ModelLoadError

CANONICAL_DOMAIN = "s4dc"
# Ops whose value is not a function of their inputs: never fold them.
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
            "Bernoulli"}


def read_model(src: "str | Path | bytes | onnx.ModelProto") -> tuple[onnx.ModelProto, str, str]:
    """Parse `src`. Returns (model, sha256 of the serialized model, display name)."""
    if isinstance(src, onnx.ModelProto):
        data, name = src.SerializeToString(), src.graph.name or "<ModelProto>"
    elif isinstance(src, (bytes, bytearray)):
        data, name = bytes(src), "<bytes>"
    else:
        name = str(src)
        try:
            data = Path(src).read_bytes()
        except OSError as e:
            raise ModelLoadError(f"{name}: cannot read file ({e.strerror})") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:
        raise ModelLoadError(f"{name}: not an ONNX model (protobuf parse failed; truncated or another format)") from None
    if not model.graph.node and not model.graph.output:
        raise ModelLoadError(f"{name}: not an ONNX model (no graph)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{name}: ONNX checker rejected the model: {first}") from None
    return model, hashlib.sha256(data).hexdigest(), name


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    raise ModelLoadError("model imports no default-domain opset")


def prepare(model: onnx.ModelProto, seq_len: int | None, name: str
            ) -> tuple[onnx.ModelProto, dict[str, dict]]:
    """The prepared model, and the quantization hints found while folding
    (see `fold_constants`)."""
    model = _inline_foreign_functions(model)
    opset = opset_of(model)
    if not 13 <= opset <= 21:
        raise ModelLoadError(f"{name}: opset {opset} is not supported (s4dc reads opsets 13 to 21)")
    _fix_time_length(model, seq_len, name)
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, data_prop=True)
    except Exception as e:
        raise ModelLoadError(f"{name}: ONNX shape inference failed: {str(e).splitlines()[0]}") from None
    hints: dict[str, dict] = {}
    return fold_constants(model, hints), hints


def _inline_foreign_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Inline model-local functions except s4dc's own canonical ones."""
    foreign = [(f.domain, f.name) for f in model.functions if f.domain != CANONICAL_DOMAIN]
    if not foreign:
        return model
    import onnx.inliner
    return onnx.inliner.inline_selected_functions(model, foreign, exclude=False)


def _fix_time_length(model: onnx.ModelProto, seq_len: int | None, name: str) -> None:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelLoadError(f"{name}: s4dc maps models with exactly one input, this one has {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) not in (2, 3):
        raise ModelLoadError(f"{name}: input '{inputs[0].name}' has rank {len(dims)}; "
                             "s4dc expects (batch, time, features) or (batch, time)")
    t = dims[1]
    if t.HasField("dim_value"):
        if seq_len is not None and seq_len != t.dim_value:
            raise DynamicShapeError(f"{name}: input '{inputs[0].name}' fixes the time length to {t.dim_value}; "
                                    f"--seq-len {seq_len} disagrees")
        return
    if seq_len is None:
        sym = t.dim_param or "?"
        raise DynamicShapeError(f"{name}: input '{inputs[0].name}' has a dynamic time length ('{sym}', axis 1); "
                                "pass --seq-len L (seq_len=L)")
    t.Clear()
    t.dim_value = seq_len


def eval_node(node: onnx.NodeProto, inputs: list[np.ndarray | None], opset: int,
              functions: list | None = None) -> list[np.ndarray]:
    """Evaluate one node on concrete arrays with onnx's reference evaluator."""
    feeds = {n: v for n, v in zip(node.input, inputs) if n and v is not None}
    ev = ReferenceEvaluator(node, opsets={"": opset}, functions=functions)
    return [np.asarray(v) for v in ev.run(None, feeds)]


def qdq_hint(scale: np.ndarray, zero_point: np.ndarray | None, dtype: np.dtype) -> dict | None:
    """What a QuantizeLinear/DequantizeLinear pair says about a tensor's grid:
    a per-tensor scale, zero point 0, integer width. None if it is not that."""
    scale = np.asarray(scale)
    zp = np.zeros(1) if zero_point is None else np.asarray(zero_point)
    if scale.size != 1 or np.any(zp != 0) or dtype.kind not in "iu":
        return None
    bits = dtype.itemsize * 8 + (1 if dtype.kind == "u" else 0)  # unsigned: one more signed bit
    s = float(scale.reshape(-1)[0])
    e = np.log2(s) if s > 0 else np.nan
    return {"scale": s, "bits": int(bits), "exp": int(e) if np.isfinite(e) and e == int(e) else None}


def fold_constants(model: onnx.ModelProto, hints: dict[str, dict] | None = None) -> onnx.ModelProto:
    """Fold constant subgraphs. A folded DequantizeLinear (quantization-aware
    training's weights) leaves a hint in `hints` under its output name."""
    opset = opset_of(model)
    g = model.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    kept: list[onnx.NodeProto] = []
    for node in g.node:
        foldable = (node.domain in ("", "ai.onnx") and node.op_type not in _NO_FOLD
                    and all((not n) or n in consts for n in node.input)
                    and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                for a in node.attribute))
        if not foldable:
            kept.append(node)
            continue
        ins = [consts[n] if n else None for n in node.input]
        outs = eval_node(node, ins, opset)
        if node.op_type == "DequantizeLinear" and hints is not None:
            h = qdq_hint(ins[1], ins[2] if len(ins) > 2 else None, np.asarray(ins[0]).dtype)
            if h is not None:
                hints[node.output[0]] = h
        for n, v in zip(node.output, outs):
            if n:
                consts[n] = v
    used = {n for node in kept for n in node.input} | {o.name for o in g.output}
    used |= _names_used_in_subgraphs(kept)
    new = onnx.ModelProto()
    new.CopyFrom(model)
    del new.graph.node[:]
    new.graph.node.extend(kept)
    del new.graph.initializer[:]
    new.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), n)
                                 for n, v in consts.items() if n in used)
    return new


def _names_used_in_subgraphs(nodes: list[onnx.NodeProto]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        for a in node.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sg in subs:
                for n in sg.node:
                    names.update(n.input)
                names |= _names_used_in_subgraphs(list(sg.node))
    return names


def initializer_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
