"""ONNX -> IR. Walks the prepared graph node by node; every node that touches
an activation goes to the handler registered for its op type
(`s4dc.frontend.handlers`); nodes on constants only are evaluated."""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from s4dc.errors import DynamicShapeError, InternalError, InvalidWeightsError, ModelLoadError, S4dcError, UnsupportedPatternError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.tensor import Tensor
from s4dc.ir.verify import verify
from s4dc.errors import first_line
from s4dc.frontend.onnx_prep import eval_checked, opset_of, tensor_array, where
from s4dc.frontend.values import PROBE_BATCHES, Act, Const, Sym, Value

__all__ = ["Frontend", "where"]


class Frontend:
    def __init__(self, model: onnx.ModelProto, name: str, hints: dict[str, dict] | None = None):
        self.model = model
        # Grids that quantization-aware training left (QuantizeLinear /
        # DequantizeLinear): weight hints by folded-initializer name, and
        # activation hints recorded by the Q/DQ handlers.
        self.hints = dict(hints or {})
        self.opset = opset_of(model)
        self.graph = Graph(name=model.graph.name or "model")
        self.values: dict[str, Value] = {}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for node in model.graph.node:
            for n in node.input:
                self.readers.setdefault(n, []).append(node)
        self.graph_outputs = {o.name for o in model.graph.output}
        self.time = 0
        self.batch: int | None = None  # the input's batch size where the file fixes it

    # -- building IR ----------------------------------------------------
    def emit(self, node: onnx.NodeProto | None, op: str, inputs: list[str], features: int,
             sequence: bool, params: dict[str, np.ndarray] | None = None,
             attrs: dict[str, Any] | None = None, base: str | None = None) -> str:
        base = base or (node.name if node is not None and node.name else op)
        lname = self.graph.unique_name(_clean(base))
        self.graph.add(Layer(lname, op, inputs, lname, attrs or {}, params or {},
                             node.name if node is not None else ""),
                       Tensor(lname, features, sequence))
        return lname

    # -- walking --------------------------------------------------------
    def lower(self) -> Graph:
        from s4dc.frontend.handlers import HANDLERS, unsupported

        g = self.model.graph
        for init in g.initializer:
            arr = tensor_array(init, f"initializer '{init.name}'")
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                reader = self.readers.get(init.name, [None])[0]
                at = f" (read by {where(reader)})" if reader is not None else ""
                raise InvalidWeightsError(f"initializer '{init.name}'{at} holds NaN or Inf values")
            self.values[init.name] = Const(arr)
        self._lower_input()
        for node in g.node:
            ins = [self.values.get(n) if n else None for n in node.input]
            for n, v in zip(node.input, ins):
                if n and v is None:
                    raise ModelLoadError(f"{where(node)}: input '{n}' is not defined")
            if any(isinstance(v, Act) for v in ins) or node.domain not in ("", "ai.onnx"):
                handler = HANDLERS.get((node.domain if node.domain != "ai.onnx" else "", node.op_type))
                if handler is None:
                    raise unsupported(node)
                outs = _guarded(handler, self, node, ins)
            else:
                outs = self._evaluate(node, ins)
            if len(outs) < len(node.output):  # a handler's short list: the rest is unused
                outs = list(outs) + [None] * (len(node.output) - len(outs))
            for n, v in zip(node.output, outs):
                if n:
                    self.values[n] = v
        self._lower_outputs()
        return verify(self.graph)

    def _lower_input(self) -> None:
        inits = {i.name for i in self.model.graph.initializer}
        inp = next(i for i in self.model.graph.input if i.name not in inits)
        tt = inp.type.tensor_type
        if tt.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            raise ModelLoadError(f"input '{inp.name}' must be floating point")
        dims = tt.shape.dim
        self.time = dims[1].dim_value
        self.batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
        if self.time < 1:
            raise DynamicShapeError(f"input '{inp.name}': time length (axis 1) is {self.time}; it must be >= 1")
        if len(dims) == 3 and dims[2].HasField("dim_value") and dims[2].dim_value < 1:
            raise UnsupportedPatternError(f"input '{inp.name}': the feature axis (2) has size {dims[2].dim_value}")
        if len(dims) == 3:
            if not dims[2].HasField("dim_value"):
                raise UnsupportedPatternError(f"input '{inp.name}': the feature axis (2) must have a fixed size")
            feats, axes = dims[2].dim_value, ("B", "T", "F")
        else:
            feats, axes = 1, ("B", "T")
        t = self.emit(None, "input", [], feats, True, attrs={"features": feats, "onnx_name": inp.name},
                      base="input")
        self.graph.meta.update(time_steps=self.time, input_name=inp.name, input_rank=len(dims))
        self.values[inp.name] = Act(t, axes, feats, self.time)

    def _lower_outputs(self) -> None:
        for o in self.model.graph.output:
            v = self.values.get(o.name)
            if not isinstance(v, Act):
                raise UnsupportedPatternError(f"output '{o.name}' does not depend on the model input")
            if v.padded:
                raise UnsupportedPatternError(f"output '{o.name}' is a padded tensor")
            layout = list(v.with_f())
            self.emit(None, "output", [v.tensor], v.features, v.sequence,
                      attrs={"layout": layout, "onnx_name": o.name}, base=f"output_{o.name}")

    def _evaluate(self, node: onnx.NodeProto, ins: list[Value | None]) -> list[Value]:
        if any(isinstance(v, Sym) for v in ins):
            runs = [eval_checked(node, [None if v is None else v.values[k] if isinstance(v, Sym) else v.value
                                        for v in ins], self.opset) for k in range(len(PROBE_BATCHES))]
            return [Sym((a, b)) for a, b in zip(*runs)]
        return [Const(v) for v in eval_checked(node, [None if v is None else v.value for v in ins], self.opset)]


def _guarded(handler, fe: Frontend, node: onnx.NodeProto, ins: list) -> list:
    """Run a handler; what escapes it other than an S4dcError is a bug in
    s4dc, reported as one line naming the node (the traceback stays chained
    for --debug)."""
    try:
        return handler(fe, node, ins)
    except S4dcError:
        raise
    except MemoryError:
        raise
    except Exception as e:
        raise InternalError(f"{where(node)}: internal error in s4dc while lowering it (a bug; please report it): "
                            f"{type(e).__name__}: {first_line(e)}") from e


def _clean(name: str) -> str:
    out = "".join(c if c.isalnum() or c in "_-." else "_" for c in name.strip("/"))
    return out or "layer"
