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

from s4dc.errors import DynamicShapeError, ModelLoadError, SizeLimitError, UnsupportedPatternError, first_line

CANONICAL_DOMAIN = "s4dc"
# The most elements s4dc lets one tensor have while reading a model (shape
# inference, constant folding): 2^25 float64 values are 256 MiB. A corrupted
# constant (e.g. 2147483647 feeding a ConstantOfShape) is refused here
# instead of making onnx allocate gigabytes.
MAX_ELEMENTS = 1 << 25
# Ops whose value is not a function of their inputs: never fold them.
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
            "Bernoulli"}


def where(node: onnx.NodeProto) -> str:
    """How error messages name an ONNX node."""
    name = node.name or (node.output[0] if node.output else "?")
    return f"node '{name}' ({node.op_type})"


# The most bytes s4dc reads from one external data file entry (a tensor of
# MAX_ELEMENTS float64 values): the same limit as for tensors stored inside.
MAX_EXTERNAL_BYTES = MAX_ELEMENTS * 8


def torch_module(node: onnx.NodeProto) -> str:
    """' in torch module NAME (Class)' from the scope metadata torch's dynamo
    exporter writes on each node (`pkg.torch.onnx.name_scopes`,
    `pkg.torch.onnx.class_hierarchy`); '' when the node carries none."""
    meta = {p.key: p.value for p in node.metadata_props}
    scopes, classes = _str_list(meta.get("pkg.torch.onnx.name_scopes")), \
        _str_list(meta.get("pkg.torch.onnx.class_hierarchy"))
    # [root '', each enclosing module's qualified name, the aten op]: the innermost module is scopes[-2]
    if not scopes or len(scopes) < 3:
        return ""
    cls = classes[-2].rpartition(".")[2] if classes and len(classes) == len(scopes) else ""
    return f" in torch module '{scopes[-2]}'" + (f" ({cls})" if cls else "")


def _str_list(text: str | None) -> list[str] | None:
    """A Python list of strings as torch writes it ("['', 'enc', 'linear']"), or None."""
    import ast
    try:
        v = ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def read_model(src: "str | Path | bytes | onnx.ModelProto", base_dir: "str | Path | None" = None,
               ) -> tuple[onnx.ModelProto, str, str]:
    """Parse `src`. Returns (model, sha256 of the serialized model, display name).

    Tensors stored in external files (`FILE.onnx.data`, which torch's dynamo
    exporter writes for initializers of 1 KiB or more) are read from the
    model file's folder, not the current directory; for bytes or a
    ModelProto from `base_dir` (without it, such a model is refused). A
    location that leaves that folder, or an entry beyond the size limit, is
    refused. The sha256 is that of the file when everything is inside it, and
    of the model with its external data loaded otherwise.
    """
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
        if base_dir is None:
            base_dir = Path(src).parent
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:
        raise ModelLoadError(f"{name}: not an ONNX model (protobuf parse failed; truncated or another format)") from None
    if not model.graph.node and not model.graph.output:
        raise ModelLoadError(f"{name}: not an ONNX model (no graph)")
    if _load_external_data(model, name, base_dir):
        data = model.SerializeToString()
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelLoadError(f"{name}: ONNX checker rejected the model: {first_line(e)}") from None
    _check_tensors(model, name)
    return model, hashlib.sha256(data).hexdigest(), name


def _all_tensors(graph: onnx.GraphProto):
    """Every TensorProto of a graph: initializers, tensor attributes, subgraphs."""
    yield from graph.initializer
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto):
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            yield a.t
        yield from a.tensors
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            yield from _all_tensors(g)


def _load_external_data(model: onnx.ModelProto, name: str, base_dir: "str | Path | None") -> bool:
    """Read every externally stored tensor into the model (see `read_model`).
    Returns whether there was one."""
    tensors = list(_all_tensors(model.graph)) + [t for f in model.functions for n in f.node
                                                  for t in _node_tensors(n)]
    ext = [t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
    if not ext:
        return False
    if base_dir is None:
        loc = {e.key: e.value for e in ext[0].external_data}.get("location", "?")
        raise ModelLoadError(f"{name}: tensor '{ext[0].name}' has its data in an external file '{loc}'; "
                             "pass base_dir (the folder that holds it) or the model's path")
    base = Path(base_dir).resolve()
    for t in ext:
        _read_external(t, base, f"{name}: tensor '{t.name}'")
    return True


def _read_external(t: onnx.TensorProto, base: Path, what: str) -> None:
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    try:
        offset, length = int(info.get("offset", 0)), (int(info["length"]) if "length" in info else None)
    except ValueError:
        raise ModelLoadError(f"{what}: external data offset or length is not an integer") from None
    path = (base / loc).resolve()
    if not loc or Path(loc).is_absolute() or not path.is_relative_to(base):
        raise ModelLoadError(f"{what}: external data location '{loc}' is not a file inside the model's "
                             f"folder {base}")
    if offset < 0 or (length is not None and not 0 <= length <= MAX_EXTERNAL_BYTES):
        raise SizeLimitError(f"{what}: external data of {length} bytes at offset {offset} (s4dc reads at "
                             f"most {MAX_EXTERNAL_BYTES} bytes per tensor)")
    try:
        size = path.stat().st_size
        if length is None:
            length = size - offset
            if length > MAX_EXTERNAL_BYTES:
                raise SizeLimitError(f"{what}: external data of {length} bytes (s4dc reads at most "
                                     f"{MAX_EXTERNAL_BYTES} bytes per tensor)")
        if offset + length > size:
            raise ModelLoadError(f"{what}: external data '{loc}' has {size} bytes, the tensor needs bytes "
                                 f"{offset} to {offset + length}")
        with open(path, "rb") as f:
            f.seek(offset)
            raw = f.read(length)
    except OSError as e:
        raise ModelLoadError(f"{what}: cannot read external data '{loc}' ({e.strerror})") from None
    t.raw_data = raw
    del t.external_data[:]
    t.data_location = onnx.TensorProto.DEFAULT


def _check_tensors(model: onnx.ModelProto, name: str) -> None:
    """Refuse initializers and Constant values whose data does not match their
    declared type and shape (the checker does not look), before numpy reads them."""
    for node in model.graph.node:  # a flipped byte can leave names that are not text
        if not all(isinstance(t, str) for t in [node.name, node.op_type, node.domain, *node.input, *node.output]):
            raise ModelLoadError(f"{name}: a node's name, op type or value names are not valid UTF-8 (corrupted file)")
    for init in model.graph.initializer:
        tensor_array(init, f"{name}: initializer '{init.name}'")
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                tensor_array(a.t, f"{name}: {where(node)}, attribute '{a.name}'")
    if model.graph.sparse_initializer:
        raise ModelLoadError(f"{name}: sparse initializer '{model.graph.sparse_initializer[0].values.name}' "
                             "is not supported")


def tensor_array(t: onnx.TensorProto, what: str) -> np.ndarray:
    """`numpy_helper.to_array(t)`, checked: size limit, stored data, declared shape."""
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"{what}: negative dimension in shape {dims}")
    count = int(np.prod(dims, dtype=object)) if dims else 1
    if count > MAX_ELEMENTS:
        raise SizeLimitError(f"{what}: shape {dims} has {count} elements, more than s4dc's limit of "
                             f"{MAX_ELEMENTS}")
    if t.data_location == onnx.TensorProto.EXTERNAL:  # read_model loads it first; a tensor made later cannot be
        raise ModelLoadError(f"{what}: data stored in an external file that was not loaded")
    try:
        np_type = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
    except Exception:
        raise ModelLoadError(f"{what}: unknown data type {t.data_type}") from None
    if t.HasField("raw_data") and np_type.kind in "biufc" and t.data_type not in _PACKED_TYPES:
        if len(t.raw_data) != count * np_type.itemsize:
            raise ModelLoadError(f"{what}: {len(t.raw_data)} bytes of data for {count} values of "
                                 f"{onnx.helper.tensor_dtype_to_string(t.data_type).split('.')[-1]} (shape {dims})")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:
        raise ModelLoadError(f"{what}: data does not match its type and shape ({first_line(e)})") from None
    if arr.size != count:
        raise ModelLoadError(f"{what}: {arr.size} values for shape {dims}")
    return arr


# Sub-byte types pack several values per byte: their raw size is not count * itemsize.
_PACKED_TYPES = {getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
                 if hasattr(onnx.TensorProto, n)}


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
    # Data propagation materializes the constants it propagates: run without
    # it first (shapes only) and check what sizes the model asks for.
    _check_sizes(_infer(model, name, data_prop=False), name)
    model = _infer(model, name, data_prop=True)
    _check_sizes(model, name)
    hints: dict[str, dict] = {}
    return fold_constants(model, hints), hints


def _infer(model: onnx.ModelProto, name: str, data_prop: bool) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, data_prop=data_prop)
    except Exception as e:
        raise ModelLoadError(f"{name}: ONNX shape inference failed: {first_line(e)}") from None


def _check_sizes(model: onnx.ModelProto, name: str) -> None:
    """Refuse a value whose inferred static shape exceeds MAX_ELEMENTS."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for vi in list(model.graph.value_info) + list(model.graph.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
        count = int(np.prod(dims, dtype=object)) if dims else 1
        if count > MAX_ELEMENTS:
            node = producer.get(vi.name)
            at = where(node) if node is not None else f"value '{vi.name}'"
            raise SizeLimitError(f"{name}: {at} makes a tensor of shape {dims} ({count} elements), more "
                                 f"than s4dc's limit of {MAX_ELEMENTS}")


def _inline_foreign_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Inline model-local functions except those a frontend handler lowers as
    they are: s4dc's own canonical ones, and any other (domain, name) a
    handler is registered for (docs/architecture.md, "a new ONNX op")."""
    from s4dc.frontend.handlers import HANDLERS  # the registry fills as the frontend imports

    foreign = [(f.domain, f.name) for f in model.functions
               if f.domain != CANONICAL_DOMAIN and (f.domain, f.name) not in HANDLERS]
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


def eval_checked(node: onnx.NodeProto, inputs: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    """`eval_node` for constant folding: refuses outputs beyond MAX_ELEMENTS
    before allocating them, and turns the evaluator's failures into an error
    naming the node."""
    size = predicted_size(node, inputs)
    if size is not None and size > MAX_ELEMENTS:
        raise SizeLimitError(f"{where(node)}: would make a tensor of {size} elements, more than s4dc's "
                             f"limit of {MAX_ELEMENTS}")
    try:
        outs = eval_node(node, inputs, opset)
    except MemoryError:
        raise SizeLimitError(f"{where(node)}: out of memory evaluating it on constants") from None
    except Exception as e:
        raise UnsupportedPatternError(f"{where(node)}: cannot evaluate on constants ({first_line(e)})") from None
    if len(outs) < len([o for o in node.output if o]):
        raise UnsupportedPatternError(f"{where(node)}: evaluating it on constants gave {len(outs)} outputs, "
                                      f"it declares {len(node.output)}")
    return outs


def _ints(v: np.ndarray | None) -> list[int] | None:
    if v is None:
        return None
    a = np.asarray(v)
    if a.dtype.kind not in "iu" or a.ndim > 1:
        return None
    return [int(x) for x in a.reshape(-1)]


def predicted_size(node: onnx.NodeProto, ins: list[np.ndarray | None]) -> int | None:
    """Elements of the largest output of the ops whose output size comes from
    input *values* (None: not one of them, or not known). Big inputs need no
    check: they are already in memory."""
    op = node.op_type
    shape = _ints(ins[1]) if len(ins) > 1 else None
    if op == "ConstantOfShape":
        dims = _ints(ins[0]) if ins else None
        return None if dims is None else _prod(dims)
    if op == "Expand" and ins[0] is not None and shape is not None:
        a = list(np.shape(ins[0]))
        n = max(len(a), len(shape))
        a, b = [1] * (n - len(a)) + a, [1] * (n - len(shape)) + shape
        return _prod([max(x, y) for x, y in zip(a, b)])
    if op == "Tile" and ins[0] is not None and shape is not None:
        return _prod([d * max(r, 0) for d, r in zip(np.shape(ins[0]), shape)])
    if op == "Pad" and ins[0] is not None and shape is not None:
        r = np.ndim(ins[0])
        return _prod([d + sum(shape[i::r][:2]) for i, d in enumerate(np.shape(ins[0]))]) if len(shape) == 2 * r \
            else None
    if op == "Range" and all(v is not None and np.size(v) == 1 for v in ins[:3]):
        start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in ins[:3])
        if delta == 0 or not all(np.isfinite([start, limit, delta])):
            return MAX_ELEMENTS + 1 if delta == 0 else None
        return max(int(np.ceil((limit - start) / delta)), 0)
    if op == "OneHot" and ins[0] is not None and ins[1] is not None and np.size(ins[1]) == 1:
        return int(np.size(ins[0])) * max(int(np.asarray(ins[1]).reshape(-1)[0]), 0)
    if op in ("Resize", "Upsample", "Col2Im", "CenterCropPad"):
        return MAX_ELEMENTS + 1  # sizes from scales: never folded (no model s4dc reads needs it)
    return None


def _prod(dims: list[int]) -> int:
    return int(np.prod([max(int(d), 0) for d in dims], dtype=object)) if dims else 1


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
    consts: dict[str, np.ndarray] = initializer_arrays(model)
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
        outs = eval_checked(node, ins, opset)
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
    return {i.name: tensor_array(i, f"initializer '{i.name}'") for i in model.graph.initializer}
