"""s4dc's canonical ONNX form of an S4D layer, and a writer for it.

A node `s4dc.S4D` (ZOH) or `s4dc.S4DBilinear` is a call of a model-local
ONNX function whose body uses standard ops only (discretization with
Exp/Cos/Sin, the recurrence with Scan), so onnxruntime runs the model as it
is, and s4dc reads the continuous parameters straight from the call's
constant inputs. Inputs, all float32:

  u (batch, T, H), dt (H,), A_re, A_im, B_re, B_im, C_re, C_im (H, N), D (H,)

  x_t = Abar x_{t-1} + Bbar u_t   (complex, N states per channel)
  y_t = 2 Re(sum_n C_n x_t,n) + D u_t

with Abar = exp(dt A), Bbar = (Abar - 1)/A * B (ZOH) or the bilinear rule.
Documented in docs/onnx_forms.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from s4dc.errors import UnsupportedPatternError
from s4dc.frontend import Frontend, where
from s4dc.handlers import _const, handles
from s4dc.values import Act

DOMAIN = "s4dc"
OPS = {"S4D": "zoh", "S4DBilinear": "bilinear"}
INPUTS = ["u", "dt", "A_re", "A_im", "B_re", "B_im", "C_re", "C_im", "D"]


def _c(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def s4d_function(op: str, opset: int) -> onnx.FunctionProto:
    """The FunctionProto of `op` ('S4D' or 'S4DBilinear')."""
    n = helper.make_node
    nodes = [
        _c("one", np.float32(1)), _c("half", np.float32(0.5)), _c("two", np.float32(2)),
        _c("ax_last", np.array([-1], np.int64)), _c("ax_0", np.array([0], np.int64)),
        _c("zero", np.array([0.0], np.float32)), _c("b0", np.array([0], np.int64)),
        _c("b1", np.array([1], np.int64)),
        n("Unsqueeze", ["dt", "ax_last"], ["dt2"]),
        n("Mul", ["dt2", "A_re"], ["ar"]), n("Mul", ["dt2", "A_im"], ["ai"]),
    ]
    if op == "S4D":  # ZOH: lam = exp(dtA); Bbar = (lam - 1) / A * B
        nodes += [
            n("Exp", ["ar"], ["mag"]), n("Cos", ["ai"], ["cs"]), n("Sin", ["ai"], ["sn"]),
            n("Mul", ["mag", "cs"], ["lr"]), n("Mul", ["mag", "sn"], ["li"]),
            n("Sub", ["lr", "one"], ["nr"]),  # numerator (lam - 1), imaginary part is li
            n("Mul", ["A_re", "A_re"], ["a2r"]), n("Mul", ["A_im", "A_im"], ["a2i"]),
            n("Add", ["a2r", "a2i"], ["den"]),
            n("Mul", ["nr", "A_re"], ["t1"]), n("Mul", ["li", "A_im"], ["t2"]), n("Add", ["t1", "t2"], ["qr0"]),
            n("Mul", ["li", "A_re"], ["t3"]), n("Mul", ["nr", "A_im"], ["t4"]), n("Sub", ["t3", "t4"], ["qi0"]),
            n("Div", ["qr0", "den"], ["qr"]), n("Div", ["qi0", "den"], ["qi"]),
        ]
    else:  # bilinear: lam = (1 + dtA/2) / (1 - dtA/2); Bbar = dt / (1 - dtA/2) * B
        nodes += [
            n("Mul", ["ar", "half"], ["hr"]), n("Mul", ["ai", "half"], ["hi"]),
            n("Add", ["one", "hr"], ["pr"]), n("Sub", ["one", "hr"], ["mr"]), n("Neg", ["hi"], ["mi"]),
            n("Mul", ["mr", "mr"], ["m2r"]), n("Mul", ["mi", "mi"], ["m2i"]), n("Add", ["m2r", "m2i"], ["den"]),
            # lam = p / m = p * conj(m) / |m|^2 with p = (pr, hi), m = (mr, mi)
            n("Mul", ["pr", "mr"], ["t1"]), n("Mul", ["hi", "mi"], ["t2"]), n("Add", ["t1", "t2"], ["lr0"]),
            n("Mul", ["hi", "mr"], ["t3"]), n("Mul", ["pr", "mi"], ["t4"]), n("Sub", ["t3", "t4"], ["li0"]),
            n("Div", ["lr0", "den"], ["lr"]), n("Div", ["li0", "den"], ["li"]),
            # q = dt / m = dt * conj(m) / |m|^2
            n("Mul", ["dt2", "mr"], ["q0"]), n("Div", ["q0", "den"], ["qr"]),
            n("Neg", ["mi"], ["nmi"]), n("Mul", ["dt2", "nmi"], ["q1"]), n("Div", ["q1", "den"], ["qi"]),
        ]
    nodes += [  # Bbar = q * B (complex)
        n("Mul", ["qr", "B_re"], ["u1"]), n("Mul", ["qi", "B_im"], ["u2"]), n("Sub", ["u1", "u2"], ["bbr"]),
        n("Mul", ["qr", "B_im"], ["u3"]), n("Mul", ["qi", "B_re"], ["u4"]), n("Add", ["u3", "u4"], ["bbi"]),
        # zero initial state (batch, H, N)
        n("Shape", ["u"], ["ushape"]), n("Slice", ["ushape", "b0", "b1"], ["batch"]),
        n("Shape", ["A_re"], ["hn"]), n("Concat", ["batch", "hn"], ["sshape"], axis=0),
        n("Expand", ["zero", "sshape"], ["x0"]),
    ]
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [
            n("Unsqueeze", ["u_t", "ax_last"], ["ue"]),
            n("Mul", ["lr", "xr"], ["p1"]), n("Mul", ["li", "xi"], ["p2"]), n("Sub", ["p1", "p2"], ["p3"]),
            n("Mul", ["bbr", "ue"], ["p4"]), n("Add", ["p3", "p4"], ["xr_new"]),
            n("Mul", ["lr", "xi"], ["q1b"]), n("Mul", ["li", "xr"], ["q2b"]), n("Add", ["q1b", "q2b"], ["q3b"]),
            n("Mul", ["bbi", "ue"], ["q4b"]), n("Add", ["q3b", "q4b"], ["xi_new"]),
            n("Mul", ["C_re", "xr_new"], ["o1"]), n("Mul", ["C_im", "xi_new"], ["o2"]),
            n("Sub", ["o1", "o2"], ["o3"]), n("ReduceSum", ["o3", "ax_last"], ["o4"], keepdims=0),
            n("Mul", ["o4", "two"], ["o5"]), n("Mul", ["D", "u_t"], ["o6"]), n("Add", ["o5", "o6"], ["y_t"]),
        ],
        "s4d_step",
        [helper.make_tensor_value_info("xr", f, None), helper.make_tensor_value_info("xi", f, None),
         helper.make_tensor_value_info("u_t", f, None)],
        [helper.make_tensor_value_info("xr_new", f, None), helper.make_tensor_value_info("xi_new", f, None),
         helper.make_tensor_value_info("y_t", f, None)],
    )
    nodes.append(n("Scan", ["x0", "x0", "u"], ["xr_T", "xi_T", "y"], body=body, num_scan_inputs=1,
                   scan_input_axes=[1], scan_output_axes=[1]))
    return helper.make_function(DOMAIN, op, INPUTS, ["y"], nodes,
                                [helper.make_opsetid("", opset)], [])


@handles(*OPS, domain=DOMAIN)
def lower_s4d(fe: Frontend, node: onnx.NodeProto, ins: list) -> list:
    u = ins[0]
    if not isinstance(u, Act) or u.pad or u.with_f() != ("B", "T", "F"):
        raise UnsupportedPatternError(f"{where(node)}: input u must be a (batch, time, features) activation")
    p = {k: _const(fe, node, v, k).astype(np.float64) for k, v in zip(INPUTS[1:], ins[1:])}
    H = u.features
    if p["dt"].shape != (H,) or p["D"].shape != (H,) or p["A_re"].ndim != 2 or p["A_re"].shape[0] != H:
        raise UnsupportedPatternError(f"{where(node)}: parameter shapes do not match H={H} channels")
    t = fe.emit(node, "ssm", [u.tensor], H, True,
                params={"A": p["A_re"] + 1j * p["A_im"], "B": p["B_re"] + 1j * p["B_im"],
                        "C": p["C_re"] + 1j * p["C_im"], "D": p["D"], "bias": np.zeros(H), "dt": p["dt"]},
                attrs={"form": "diagonal", "time": "continuous", "discretization": OPS[node.op_type],
                       "folded": True})
    return [Act(t, u.axes, H, u.time)]


# --- writer ---------------------------------------------------------------------
@dataclass
class CanonicalModel:
    """Build an S4D model in the canonical form, layer by layer.

    >>> m = CanonicalModel(features=1, time=64)
    >>> m.linear(W, b); m.s4d(dt, A, B, C, D); m.relu(); m.readout("mean"); m.linear(W2, b2)
    >>> m.to_onnx().SerializeToString()
    """

    features: int
    time: int | None
    opset: int = 18
    _nodes: list = field(default_factory=list)
    _inits: list = field(default_factory=list)
    _cur: str = "x"
    _width: int = 0
    _seq: bool = True
    _ops: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self._width = self.features

    def _name(self, base: str) -> str:
        return f"{base}_{len(self._nodes)}"

    def _init(self, name: str, value: np.ndarray) -> str:
        self._inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def linear(self, weight: np.ndarray, bias: np.ndarray | None = None) -> "CanonicalModel":
        """y = x @ weight.T + bias over the feature axis (weight (out, in))."""
        out = self._name("linear")
        w = self._init(out + "_W", np.asarray(weight).T)
        self._nodes.append(helper.make_node("MatMul", [self._cur, w], [out + "_mm"]))
        b = self._init(out + "_b", np.zeros(weight.shape[0]) if bias is None else bias)
        self._nodes.append(helper.make_node("Add", [out + "_mm", b], [out]))
        self._cur, self._width = out, weight.shape[0]
        return self

    def s4d(self, dt, A, B, C, D, discretization: str = "zoh") -> "CanonicalModel":
        """A diagonal S4D layer on all current features (A, B, C complex (H, N))."""
        if not self._seq:
            raise ValueError("s4d after a readout")
        A, B, C = (np.asarray(z, complex) for z in (A, B, C))
        op = {"zoh": "S4D", "bilinear": "S4DBilinear"}[discretization]
        out = self._name("s4d")
        vals = [dt, A.real, A.imag, B.real, B.imag, C.real, C.imag, D]
        names = [self._init(f"{out}_{k}", v) for k, v in zip(INPUTS[1:], vals)]
        self._nodes.append(helper.make_node(op, [self._cur] + names, [out], domain=DOMAIN, name=out))
        self._ops.add(op)
        self._cur = out
        return self

    def relu(self) -> "CanonicalModel":
        out = self._name("relu")
        self._nodes.append(helper.make_node("Relu", [self._cur], [out]))
        self._cur = out
        return self

    def readout(self, mode: str) -> "CanonicalModel":
        out = self._name("readout")
        if mode == "mean":
            if self.opset >= 18:  # axes became an input in opset 18
                self._inits.append(numpy_helper.from_array(np.array([1], np.int64), out + "_axes"))
                self._nodes.append(helper.make_node("ReduceMean", [self._cur, out + "_axes"], [out], keepdims=0))
            else:
                self._nodes.append(helper.make_node("ReduceMean", [self._cur], [out], axes=[1], keepdims=0))
        elif mode == "last":
            self._inits.append(numpy_helper.from_array(np.array(-1, np.int64), out + "_idx"))
            self._nodes.append(helper.make_node("Gather", [self._cur, out + "_idx"], [out], axis=1))
        else:
            raise ValueError(mode)
        self._cur, self._seq = out, False
        return self

    def to_onnx(self) -> onnx.ModelProto:
        f = TensorProto.FLOAT
        x = helper.make_tensor_value_info("x", f, ["batch", self.time or "time", self.features])
        y_shape = ["batch", self.time or "time", self._width] if self._seq else ["batch", self._width]
        y = helper.make_tensor_value_info("y", f, y_shape)
        nodes = list(self._nodes)
        nodes.append(helper.make_node("Identity", [self._cur], ["y"]))
        graph = helper.make_graph(nodes, "s4dc_canonical", [x], [y], self._inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", self.opset), helper.make_opsetid(DOMAIN, 1)],
            functions=[s4d_function(op, self.opset) for op in sorted(self._ops)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model
