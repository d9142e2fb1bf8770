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

Two more functions carry what quantization-aware training fixed
(`s4dc.torch.qat`):

* `s4dc.S4DDiscrete` (u, lam_re, lam_im, B_re, B_im, C_re, C_im (H, N), D,
  bias (H,)): the discrete recurrence x_t = lam x_{t-1} + B u_t,
  y_t = 2 Re(C x_t) + D u_t + bias. With the attribute `state_exp` the
  coefficients are already on their chip grids and the state register's
  exponent is given: the quantizer uses them as they are.
* `s4dc.Quant` (x, scale, lo, hi): fake quantization
  clip(floor(x / scale + 1/2), lo, hi) * scale, round half up as the chip's
  input encoding; a power-of-two scale fixes the tensor's message exponent.

Documented in docs/onnx_forms.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from s4dc.errors import UnstableSystemError, UnsupportedPatternError
from s4dc.frontend.body_check import check_body
from s4dc.frontend.lower import Frontend, where
from s4dc.frontend.handlers import _const, handles
from s4dc.frontend.values import Act

DOMAIN = "s4dc"
OPS = {"S4D": "zoh", "S4DBilinear": "bilinear"}
INPUTS = ["u", "dt", "A_re", "A_im", "B_re", "B_im", "C_re", "C_im", "D"]
DISCRETE_INPUTS = ["u", "lam_re", "lam_im", "B_re", "B_im", "C_re", "C_im", "D", "bias"]
QUANT_INPUTS = ["x", "scale", "lo", "hi"]
# MIMO diagonal state spaces (S5, LRU): one shared state of P modes.
MIMO_OPS = {"MIMO": "zoh", "MIMOBilinear": "bilinear"}
MIMO_INPUTS = ["u", "dt", "A_re", "A_im", "B_re", "B_im", "C_re", "C_im", "D"]
MIMO_DISCRETE_INPUTS = ["u", "lam_re", "lam_im", "B_re", "B_im", "C_re", "C_im", "D", "bias"]
FUNCTIONS = ("S4D", "S4DBilinear", "S4DDiscrete", "Quant", "MIMO", "MIMOBilinear", "MIMODiscrete")


def _c(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def s4d_function(op: str, opset: int) -> onnx.FunctionProto:
    """The FunctionProto of `op` ('S4D' or 'S4DBilinear')."""
    n = helper.make_node
    nodes = _common_constants() + [
        n("Unsqueeze", ["dt", "ax_last"], ["dt2"]),
        n("Mul", ["dt2", "A_re"], ["ar"]), n("Mul", ["dt2", "A_im"], ["ai"]),
    ] + _discretization(OPS[op]) + _bbar("qr", "qi")
    return helper.make_function(DOMAIN, op, INPUTS, ["y"], nodes + _recurrence("y"),
                                [helper.make_opsetid("", opset)], [])


def _discretization(kind: str) -> list[onnx.NodeProto]:
    """lam = (lr, li) and the input gain q = (qr, qi) from ar + i ai = dt A
    (and dt2, dt broadcast like A), elementwise."""
    n = helper.make_node
    if kind == "zoh":  # lam = exp(dtA); Bbar = (lam - 1) / A * B
        return [
            n("Exp", ["ar"], ["mag"]), n("Cos", ["ai"], ["cs"]), n("Sin", ["ai"], ["sn"]),
            n("Mul", ["mag", "cs"], ["lr"]), n("Mul", ["mag", "sn"], ["li"]),
            n("Sub", ["lr", "one"], ["nr"]),  # numerator (lam - 1), imaginary part is li
            n("Mul", ["A_re", "A_re"], ["a2r"]), n("Mul", ["A_im", "A_im"], ["a2i"]),
            n("Add", ["a2r", "a2i"], ["den"]),
            n("Mul", ["nr", "A_re"], ["t1"]), n("Mul", ["li", "A_im"], ["t2"]), n("Add", ["t1", "t2"], ["qr0"]),
            n("Mul", ["li", "A_re"], ["t3"]), n("Mul", ["nr", "A_im"], ["t4"]), n("Sub", ["t3", "t4"], ["qi0"]),
            n("Div", ["qr0", "den"], ["qr"]), n("Div", ["qi0", "den"], ["qi"]),
        ]
    return [  # bilinear: lam = (1 + dtA/2) / (1 - dtA/2); Bbar = dt / (1 - dtA/2) * B
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


def _bbar(qr: str, qi: str) -> list[onnx.NodeProto]:
    """Bbar = q * B (complex): (bbr, bbi)."""
    n = helper.make_node
    return [
        n("Mul", [qr, "B_re"], ["u1"]), n("Mul", [qi, "B_im"], ["u2"]), n("Sub", ["u1", "u2"], ["bbr"]),
        n("Mul", [qr, "B_im"], ["u3"]), n("Mul", [qi, "B_re"], ["u4"]), n("Add", ["u3", "u4"], ["bbi"]),
    ]


def _recurrence(y: str) -> list[onnx.NodeProto]:
    """x_t = (lr + i li) x_{t-1} + (bbr + i bbi) u_t, y_t = 2 Re(C x_t) + D u_t
    over u (batch, T, H) with a Scan, from a zero state."""
    n = helper.make_node
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
    return [  # zero initial state (batch, H, N), then the scan over time
        n("Shape", ["u"], ["ushape"]), n("Slice", ["ushape", "b0", "b1"], ["batch"]),
        n("Shape", ["C_re"], ["hn"]), n("Concat", ["batch", "hn"], ["sshape"], axis=0),
        n("Expand", ["zero", "sshape"], ["x0"]),
        n("Scan", ["x0", "x0", "u"], ["xr_T", "xi_T", y], body=body, num_scan_inputs=1,
          scan_input_axes=[1], scan_output_axes=[1]),
    ]


def _common_constants() -> list[onnx.NodeProto]:
    return [
        _c("one", np.float32(1)), _c("half", np.float32(0.5)), _c("two", np.float32(2)),
        _c("ax_last", np.array([-1], np.int64)), _c("ax_0", np.array([0], np.int64)),
        _c("zero", np.array([0.0], np.float32)), _c("b0", np.array([0], np.int64)),
        _c("b1", np.array([1], np.int64)),
    ]


def discrete_function(opset: int) -> onnx.FunctionProto:
    """s4dc.S4DDiscrete: the recurrence with given lam and B, plus a bias.
    Attribute `state_exp` (optional): declared, read by s4dc only."""
    n = helper.make_node
    nodes = _common_constants() + [
        n("Identity", ["lam_re"], ["lr"]), n("Identity", ["lam_im"], ["li"]),
        n("Identity", ["B_re"], ["bbr"]), n("Identity", ["B_im"], ["bbi"]),
    ] + _recurrence("y0") + [n("Add", ["y0", "bias"], ["y"])]
    return helper.make_function(DOMAIN, "S4DDiscrete", DISCRETE_INPUTS, ["y"], nodes,
                                [helper.make_opsetid("", opset)], ["state_exp"])


def quant_function(opset: int) -> onnx.FunctionProto:
    """s4dc.Quant: clip(floor(x / scale + 1/2), lo, hi) * scale."""
    n = helper.make_node
    nodes = [_c("half", np.float32(0.5)),
             n("Div", ["x", "scale"], ["m0"]), n("Add", ["m0", "half"], ["m1"]), n("Floor", ["m1"], ["m2"]),
             n("Clip", ["m2", "lo", "hi"], ["m3"]), n("Mul", ["m3", "scale"], ["y"])]
    return helper.make_function(DOMAIN, "Quant", QUANT_INPUTS, ["y"], nodes, [helper.make_opsetid("", opset)], [])


def mimo_function(op: str, opset: int) -> onnx.FunctionProto:
    """s4dc.MIMO (ZOH), s4dc.MIMOBilinear: dt, A (P,) continuous eigenvalues,
    B (P, H_in), C (H_out, P) complex, D (H_out, H_in). s4dc.MIMODiscrete:
    lam (P,), B, C, D and bias (H_out,). y_t = 2 Re(C x_t) + D u_t (+ bias)."""
    n = helper.make_node
    if op == "MIMODiscrete":
        nodes = _common_constants() + [
            n("Identity", ["lam_re"], ["lr"]), n("Identity", ["lam_im"], ["li"]),
            n("Identity", ["B_re"], ["bbr"]), n("Identity", ["B_im"], ["bbi"]),
        ] + _mimo_recurrence("y0") + [n("Add", ["y0", "bias"], ["y"])]
        return helper.make_function(DOMAIN, op, MIMO_DISCRETE_INPUTS, ["y"], nodes,
                                    [helper.make_opsetid("", opset)], [])
    nodes = _common_constants() + [
        n("Identity", ["dt"], ["dt2"]),  # dt (P,): one time step per mode, like A
        n("Mul", ["dt2", "A_re"], ["ar"]), n("Mul", ["dt2", "A_im"], ["ai"]),
    ] + _discretization(MIMO_OPS[op]) + [
        n("Unsqueeze", ["qr", "ax_last"], ["qrc"]), n("Unsqueeze", ["qi", "ax_last"], ["qic"]),  # (P, 1) over B's rows
    ] + _bbar("qrc", "qic")
    return helper.make_function(DOMAIN, op, MIMO_INPUTS, ["y"], nodes + _mimo_recurrence("y"),
                                [helper.make_opsetid("", opset)], [])


def _mimo_recurrence(y: str) -> list[onnx.NodeProto]:
    """x_t = lam x_{t-1} + Bbar u_t (x (batch, P) complex as re/im), y_t =
    2 Re(C x_t) + D u_t, with a Scan over u (batch, T, H_in) from zero."""
    n = helper.make_node
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [
            n("MatMul", ["u_t", "btr"], ["ubr"]), n("MatMul", ["u_t", "bti"], ["ubi"]),
            n("Mul", ["lr", "xr"], ["p1"]), n("Mul", ["li", "xi"], ["p2"]), n("Sub", ["p1", "p2"], ["p3"]),
            n("Add", ["p3", "ubr"], ["xr_new"]),
            n("Mul", ["lr", "xi"], ["q1b"]), n("Mul", ["li", "xr"], ["q2b"]), n("Add", ["q1b", "q2b"], ["q3b"]),
            n("Add", ["q3b", "ubi"], ["xi_new"]),
            n("MatMul", ["xr_new", "ctr"], ["o1"]), n("MatMul", ["xi_new", "cti"], ["o2"]),
            n("Sub", ["o1", "o2"], ["o3"]), n("Mul", ["o3", "two"], ["o5"]),
            n("MatMul", ["u_t", "dtr"], ["o6"]), n("Add", ["o5", "o6"], ["y_t"]),
        ],
        "mimo_step",
        [helper.make_tensor_value_info("xr", f, None), helper.make_tensor_value_info("xi", f, None),
         helper.make_tensor_value_info("u_t", f, None)],
        [helper.make_tensor_value_info("xr_new", f, None), helper.make_tensor_value_info("xi_new", f, None),
         helper.make_tensor_value_info("y_t", f, None)],
    )
    return [
        n("Transpose", ["bbr"], ["btr"], perm=[1, 0]), n("Transpose", ["bbi"], ["bti"], perm=[1, 0]),
        n("Transpose", ["C_re"], ["ctr"], perm=[1, 0]), n("Transpose", ["C_im"], ["cti"], perm=[1, 0]),
        n("Transpose", ["D"], ["dtr"], perm=[1, 0]),
        # zero initial state (batch, P), then the scan over time
        n("Shape", ["u"], ["ushape"]), n("Slice", ["ushape", "b0", "b1"], ["batch"]),
        n("Shape", ["lr"], ["pshape"]), n("Concat", ["batch", "pshape"], ["sshape"], axis=0),
        n("Expand", ["zero", "sshape"], ["x0"]),
        n("Scan", ["x0", "x0", "u"], ["xr_T", "xi_T", y], body=body, num_scan_inputs=1,
          scan_input_axes=[1], scan_output_axes=[1]),
    ]


def function_proto(op: str, opset: int) -> onnx.FunctionProto:
    """The model-local FunctionProto of any of s4dc's functions (`FUNCTIONS`)."""
    if op in MIMO_OPS or op == "MIMODiscrete":
        return mimo_function(op, opset)
    if op in OPS:
        return s4d_function(op, opset)
    if op == "S4DDiscrete":
        return discrete_function(opset)
    if op == "Quant":
        return quant_function(opset)
    raise ValueError(f"no s4dc function '{op}'")


def _params(fe: Frontend, node: onnx.NodeProto, ins: list, names: list[str]) -> tuple[Act, dict[str, np.ndarray]]:
    """The activation u and the constant float parameters, after the body check."""
    if len(ins) != len(names):
        raise UnsupportedPatternError(f"{where(node)}: {len(ins)} inputs; {node.op_type} takes {len(names)} "
                                      f"({', '.join(names)})")
    check_body(fe, node)
    u = ins[0]
    if not isinstance(u, Act) or u.padded or u.with_f() != ("B", "T", "F"):
        raise UnsupportedPatternError(f"{where(node)}: input u must be a (batch, time, features) activation")
    p = {}
    for k, v in zip(names[1:], ins[1:]):
        a = _const(fe, node, v, k)
        if a.dtype.kind not in "fiu":
            raise UnsupportedPatternError(f"{where(node)}: parameter {k} has dtype {a.dtype}; float32 expected")
        p[k] = a.astype(np.float64)
    return u, p


@handles(*OPS, domain=DOMAIN)
def lower_s4d(fe: Frontend, node: onnx.NodeProto, ins: list) -> list:
    u, p = _params(fe, node, ins, INPUTS)
    H = u.features
    hn = p["A_re"].shape
    if p["dt"].shape != (H,) or p["D"].shape != (H,) or len(hn) != 2 or hn[0] != H \
            or any(p[k].shape != hn for k in INPUTS[2:8]):
        raise UnsupportedPatternError(f"{where(node)}: parameter shapes do not match H={H} channels "
                                      "(dt, D: (H,); A, B, C: (H, N))")
    t = fe.emit(node, "ssm", [u.tensor], H, True, params=_continuous(p, H),
                attrs={"form": "diagonal", "time": "continuous", "discretization": OPS[node.op_type],
                       "folded": True})
    return [Act(t, u.axes, H, u.time)]


def _continuous(p: dict[str, np.ndarray], outputs: int) -> dict[str, np.ndarray]:
    """The IR parameters of a continuous S4D or MIMO call (complex A, B, C; no bias)."""
    return {"A": p["A_re"] + 1j * p["A_im"], "B": p["B_re"] + 1j * p["B_im"], "C": p["C_re"] + 1j * p["C_im"],
            "D": p["D"], "bias": np.zeros(outputs), "dt": p["dt"]}


def _discrete_params(fe: Frontend, node: onnx.NodeProto, ins: list) -> tuple[Act, dict[str, np.ndarray]]:
    u, p = _params(fe, node, ins, DISCRETE_INPUTS)
    H = u.features
    hn = p["lam_re"].shape
    if len(hn) != 2 or hn[0] != H or any(p[k].shape != hn for k in DISCRETE_INPUTS[2:7]) \
            or p["D"].shape != (H,) or p["bias"].shape != (H,):
        raise UnsupportedPatternError(f"{where(node)}: parameter shapes do not match H={H} channels "
                                      "(lam, B, C: (H, N); D, bias: (H,))")
    return u, p


@handles("S4DDiscrete", domain=DOMAIN)
def lower_s4d_discrete(fe: Frontend, node: onnx.NodeProto, ins: list) -> list:
    u, p = _discrete_params(fe, node, ins)
    lam = p["lam_re"] + 1j * p["lam_im"]
    if np.any(np.abs(lam) >= 1):
        h = int(np.argwhere(np.abs(lam) >= 1)[0][0])
        raise UnstableSystemError(f"{where(node)}: channel {h} has an eigenvalue with |lambda| = "
                                  f"{np.abs(lam[h]).max():.6g} >= 1; the state matrix must be stable")
    attrs = {"form": "diagonal", "time": "discrete", "folded": True}
    state_exp = next((a.i for a in node.attribute if a.name == "state_exp"), None)
    if state_exp is not None:  # coefficients on their chip grids (quantization-aware training)
        attrs["qat"] = {"state_exp": int(state_exp)}
    t = fe.emit(node, "ssm", [u.tensor], u.features, True,
                params={"A": lam, "B": p["B_re"] + 1j * p["B_im"], "C": p["C_re"] + 1j * p["C_im"],
                        "D": p["D"], "bias": p["bias"]}, attrs=attrs)
    return [Act(t, u.axes, u.features, u.time)]


def _mimo_shapes(node: onnx.NodeProto, u: Act, p: dict[str, np.ndarray], lam: str, extra: str) -> tuple[int, int]:
    """(P, H_out) after checking every MIMO parameter's shape."""
    h_in = u.features
    P = p[lam + "_re"].shape[0] if p[lam + "_re"].ndim == 1 else -1
    h_out = p["C_re"].shape[0] if p["C_re"].ndim == 2 else -1
    want = {lam + "_re": (P,), lam + "_im": (P,), "B_re": (P, h_in), "B_im": (P, h_in), "C_re": (h_out, P),
            "C_im": (h_out, P), "D": (h_out, h_in), extra: (P,) if extra == "dt" else (h_out,)}
    if P < 0 or h_out < 0 or any(p[k].shape != v for k, v in want.items()):
        raise UnsupportedPatternError(f"{where(node)}: parameter shapes do not match {h_in} inputs: {lam}, "
                                      f"{extra if extra == 'dt' else ''} (P,); B (P, H_in); C (H_out, P); "
                                      f"D (H_out, H_in){'; bias (H_out,)' if extra == 'bias' else ''}")
    return P, h_out


@handles(*MIMO_OPS, domain=DOMAIN)
def lower_mimo(fe: Frontend, node: onnx.NodeProto, ins: list) -> list:
    u, p = _params(fe, node, ins, MIMO_INPUTS)
    P, h_out = _mimo_shapes(node, u, p, "A", "dt")
    t = fe.emit(node, "mimo", [u.tensor], h_out, True, params=_continuous(p, h_out),
                attrs={"form": "diagonal", "time": "continuous", "discretization": MIMO_OPS[node.op_type],
                       "folded": True})
    return [Act(t, u.axes, h_out, u.time)]


@handles("MIMODiscrete", domain=DOMAIN)
def lower_mimo_discrete(fe: Frontend, node: onnx.NodeProto, ins: list) -> list:
    u, p = _params(fe, node, ins, MIMO_DISCRETE_INPUTS)
    P, h_out = _mimo_shapes(node, u, p, "lam", "bias")
    lam = p["lam_re"] + 1j * p["lam_im"]
    if P and np.abs(lam).max() >= 1:
        k = int(np.argmax(np.abs(lam)))
        raise UnstableSystemError(f"{where(node)}: mode {k} has an eigenvalue with |lambda| = "
                                  f"{np.abs(lam[k]):.6g} >= 1; the state matrix must be stable")
    t = fe.emit(node, "mimo", [u.tensor], h_out, True,
                params={"A": lam, "B": p["B_re"] + 1j * p["B_im"], "C": p["C_re"] + 1j * p["C_im"],
                        "D": p["D"], "bias": p["bias"]},
                attrs={"form": "diagonal", "time": "discrete", "folded": True})
    return [Act(t, u.axes, h_out, u.time)]


@handles("Quant", domain=DOMAIN)
def lower_quant(fe: Frontend, node: onnx.NodeProto, ins: list) -> list:
    """Fake quantization: the float path passes it through; a power-of-two
    scale with a signed range [-2^(b-1), 2^(b-1) - 1] fixes the tensor's
    message exponent for the quantizer."""
    if len(ins) != len(QUANT_INPUTS):
        raise UnsupportedPatternError(f"{where(node)}: {len(ins)} inputs; Quant takes {len(QUANT_INPUTS)} "
                                      f"({', '.join(QUANT_INPUTS)})")
    check_body(fe, node)
    act = ins[0]
    if not isinstance(act, Act):
        raise UnsupportedPatternError(f"{where(node)}: quantizes a constant; only activations carry a grid here")
    consts = [_const(fe, node, v, k) for v, k in zip(ins[1:], QUANT_INPUTS[1:])]
    for c, k in zip(consts, QUANT_INPUTS[1:]):
        if c.size != 1 or c.dtype.kind not in "fiu":
            raise UnsupportedPatternError(f"{where(node)}: {k} must be a numeric scalar, got shape {c.shape} "
                                          f"dtype {c.dtype}")
    scale, lo, hi = (float(c.reshape(-1)[0]) for c in consts)
    e = np.log2(scale) if scale > 0 else np.nan
    bits = int(round(np.log2(hi + 1))) + 1 if hi > 0 else 0
    if not np.isfinite(e) or e != int(e):
        raise UnsupportedPatternError(f"{where(node)}: scale {scale:g} is not a power of two")
    if bits < 2 or lo != -(2.0 ** (bits - 1)) or hi != 2.0 ** (bits - 1) - 1:
        raise UnsupportedPatternError(f"{where(node)}: range [{lo:g}, {hi:g}] is not a signed integer range")
    from s4dc.ir.tensor import FixedPoint
    fe.graph.tensors[act.tensor].fmt = FixedPoint(bits, int(e))
    return [act]


# --- writer ---------------------------------------------------------------------
def s4d_channels_mimo(dt, A, B, C, D) -> dict[str, np.ndarray]:
    """The state-spaces S4D with `channels > 1` as MIMO parameters: H
    channels of N complex states (dt (H,), A, B (H, N)), read by `channels`
    output maps C (channels, H, N) with skips D (channels, H); features out
    c-major (c * H + h), as state-spaces' rearrange of (B, channels, H, L)
    to (B, L, channels * H). It is MIMO with structure: P = H * N modes,
    mode (h, n) driven by input h alone. Returns dt (P,), A (P,), B (P, H),
    C (channels * H, P), D (channels * H, H)."""
    A, B, C = (np.asarray(z, complex) for z in (A, B, C))
    D = np.asarray(D, float)
    H, N = A.shape
    ch = C.shape[0]
    if C.shape != (ch, H, N) or D.shape != (ch, H) or B.shape != (H, N) or np.shape(dt) != (H,):
        raise ValueError("s4d_channels: dt (H,), A, B (H, N), C (channels, H, N), D (channels, H)")
    Bm = np.zeros((H * N, H), complex)
    Cm = np.zeros((ch * H, H * N), complex)
    Dm = np.zeros((ch * H, H))
    for h in range(H):
        Bm[h * N:(h + 1) * N, h] = B[h]
        Cm[h::H, h * N:(h + 1) * N][:ch] = C[:, h, :]
        Dm[h::H, h][:ch] = D[:, h]
    return {"dt": np.repeat(np.asarray(dt, float), N), "A": A.reshape(-1), "B": Bm, "C": Cm, "D": Dm}


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

    def mimo(self, lam, B, C, D, bias=None, dt=None, discretization: str = "zoh") -> "CanonicalModel":
        """A MIMO diagonal layer (S5, LRU) on all current features: lam (P,)
        complex (continuous eigenvalues with `dt` (P,), or discrete ones
        without), B (P, H_in), C (H_out, P) complex, D (H_out, H_in);
        y = 2 Re(C x) + D u (+ bias, discrete only)."""
        if not self._seq:
            raise ValueError("mimo after a readout")
        lam, B, C = (np.asarray(z, complex) for z in (lam, B, C))
        D = np.asarray(D, float)
        out = self._name("mimo")
        if dt is None:
            op, keys = "MIMODiscrete", MIMO_DISCRETE_INPUTS
            vals = [lam.real, lam.imag, B.real, B.imag, C.real, C.imag, D,
                    np.zeros(C.shape[0]) if bias is None else bias]
        else:
            if bias is not None:
                raise ValueError("a continuous mimo layer has no bias input (add a linear layer)")
            op, keys = {"zoh": "MIMO", "bilinear": "MIMOBilinear"}[discretization], MIMO_INPUTS
            vals = [dt, lam.real, lam.imag, B.real, B.imag, C.real, C.imag, D]
        names = [self._init(f"{out}_{k}", v) for k, v in zip(keys[1:], vals)]
        self._nodes.append(helper.make_node(op, [self._cur] + names, [out], domain=DOMAIN, name=out))
        self._ops.add(op)
        self._cur, self._width = out, C.shape[0]
        return self

    def s4d_channels(self, dt, A, B, C, D, discretization: str = "zoh") -> "CanonicalModel":
        """The state-spaces S4D with `channels > 1` as an s4dc.MIMO node
        (the mapping: `s4d_channels_mimo`)."""
        p = s4d_channels_mimo(dt, A, B, C, D)
        return self.mimo(p["A"], p["B"], p["C"], p["D"], dt=p["dt"], discretization=discretization)

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
            functions=[function_proto(op, self.opset) for op in sorted(self._ops)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model
