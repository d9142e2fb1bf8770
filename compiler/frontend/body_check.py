"""Check a canonical s4dc function's body against what s4dc compiles.

s4dc compiles an `s4dc.S4D` (or S4DBilinear, S4DDiscrete, Quant) node from
its op name and constant inputs, while onnxruntime runs the model-local
function's body. An edited body would make the two disagree silently, so the
body is evaluated on small probe inputs with onnxruntime (what runs the model;
onnx's reference evaluator cannot scan along axis 1) and compared with the op's semantics (docs/onnx_forms.md); a mismatch is refused
naming the node. Probes are small (3 channels, 2 states, 6 steps), so this
costs a few milliseconds per function.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx.inliner
from onnx import TensorProto, helper

from s4dc.errors import FunctionBodyError, S4dcError, first_line
from s4dc.frontend.onnx_prep import _check_sizes, tensor_array, where

H, N, T, BATCH = 3, 2, 6, 2
P, H_OUT = 4, 2  # MIMO probes: H inputs, P shared modes, H_OUT outputs
MIMO = ("MIMO", "MIMOBilinear", "MIMODiscrete")
REL_TOL = 1e-4  # float32 bodies against float64 semantics


def _probes(op: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    n = lambda *s: rng.standard_normal(s)  # noqa: E731
    u = n(BATCH, T, H)
    if op == "Quant":
        return {"x": 3 * n(BATCH, T, H), "scale": np.array(0.25), "lo": np.array(-8.0), "hi": np.array(7.0)}
    if op in MIMO:
        c = {"B_re": n(P, H), "B_im": n(P, H), "C_re": n(H_OUT, P), "C_im": n(H_OUT, P), "D": n(H_OUT, H)}
        if op == "MIMODiscrete":
            lam = rng.uniform(0.5, 0.95, P) * np.exp(1j * rng.uniform(0, 3, P))
            return {"u": u, "lam_re": lam.real, "lam_im": lam.imag, **c, "bias": n(H_OUT)}
        return {"u": u, "dt": rng.uniform(0.05, 0.5, P), "A_re": -rng.uniform(0.1, 1.0, P),
                "A_im": rng.uniform(0.0, 3.0, P), **c}
    if op == "S4DDiscrete":
        lam = rng.uniform(0.5, 0.95, (H, N)) * np.exp(1j * rng.uniform(0, 3, (H, N)))
        return {"u": u, "lam_re": lam.real, "lam_im": lam.imag, "B_re": n(H, N), "B_im": n(H, N),
                "C_re": n(H, N), "C_im": n(H, N), "D": n(H), "bias": n(H)}
    return {"u": u, "dt": rng.uniform(0.05, 0.5, H), "A_re": -rng.uniform(0.1, 1.0, (H, N)),
            "A_im": rng.uniform(0.0, 3.0, (H, N)), "B_re": n(H, N), "B_im": n(H, N), "C_re": n(H, N),
            "C_im": n(H, N), "D": n(H)}


def _expected(op: str, p: dict[str, np.ndarray]) -> np.ndarray:
    """The op's semantics in float64 (docs/onnx_forms.md)."""
    if op == "Quant":
        return np.clip(np.floor(p["x"] / p["scale"] + 0.5), p["lo"], p["hi"]) * p["scale"]
    if op in MIMO:
        return _expected_mimo(op, p)
    B, C = p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]
    bias = p.get("bias", 0.0)
    if op == "S4DDiscrete":
        lam, bbar = p["lam_re"] + 1j * p["lam_im"], B
    else:
        dtA = p["dt"][:, None] * (p["A_re"] + 1j * p["A_im"])
        if op == "S4D":
            lam = np.exp(dtA)
            bbar = (lam - 1) / (p["A_re"] + 1j * p["A_im"]) * B
        else:  # S4DBilinear
            lam = (1 + dtA / 2) / (1 - dtA / 2)
            bbar = p["dt"][:, None] / (1 - dtA / 2) * B
    x = np.zeros((p["u"].shape[0], H, N), complex)
    ys = []
    for t in range(p["u"].shape[1]):
        u_t = p["u"][:, t, :]
        x = lam * x + bbar * u_t[:, :, None]
        ys.append(2 * (C * x).sum(-1).real + p["D"] * u_t + bias)
    return np.stack(ys, axis=1)


def _expected_mimo(op: str, p: dict[str, np.ndarray]) -> np.ndarray:
    """MIMO semantics: x_t = lam x_{t-1} + Bbar u_t (P shared modes),
    y_t = 2 Re(C x_t) + D u_t + bias."""
    B, C = p["B_re"] + 1j * p["B_im"], p["C_re"] + 1j * p["C_im"]
    if op == "MIMODiscrete":
        lam, bbar = p["lam_re"] + 1j * p["lam_im"], B
    else:
        A = p["A_re"] + 1j * p["A_im"]
        dtA = p["dt"] * A
        if op == "MIMO":
            lam = np.exp(dtA)
            bbar = ((lam - 1) / A)[:, None] * B
        else:
            lam = (1 + dtA / 2) / (1 - dtA / 2)
            bbar = (p["dt"] / (1 - dtA / 2))[:, None] * B
    x = np.zeros((p["u"].shape[0], len(lam)), complex)
    ys = []
    for t in range(p["u"].shape[1]):
        u_t = p["u"][:, t, :]
        x = lam * x + u_t @ bbar.T
        ys.append(2 * (x @ C.T).real + u_t @ p["D"].T + p.get("bias", 0.0))
    return np.stack(ys, axis=1)


def check_body(fe, node: onnx.NodeProto) -> None:
    """Refuse `node` unless its function's body computes the op on probes.
    Checked once per (function, attributes) in a model."""
    attrs = tuple(sorted(a.SerializeToString() for a in node.attribute))
    key = (node.domain, node.op_type, attrs)
    done = fe.__dict__.setdefault("_checked_bodies", set())
    if key in done:
        return
    fn = next((f for f in fe.model.functions if f.domain == node.domain and f.name == node.op_type), None)
    if fn is None:
        raise FunctionBodyError(f"{where(node)}: the model defines no function {node.domain}.{node.op_type}, so "
                                "onnxruntime cannot run it; write the model with CanonicalModel or s4dc.torch.export")
    probes = _probes(node.op_type)
    names = list(fn.input)
    if sorted(names) != sorted(probes) or len(fn.output) != 1:
        raise FunctionBodyError(f"{where(node)}: function {node.domain}.{node.op_type} has inputs {names} and "
                                f"{len(fn.output)} output(s); s4dc's op takes {sorted(probes)} and gives one")
    got = _evaluate(fe, node, fn, probes)
    want = _expected(node.op_type, probes)
    if got.shape != want.shape:
        raise FunctionBodyError(f"{where(node)}: the body of {node.domain}.{node.op_type} gives shape {got.shape} "
                                f"on probe inputs, the op gives {want.shape}")
    dev = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)) if got.size else 0.0
    if not dev <= REL_TOL:
        raise FunctionBodyError(f"{where(node)}: the body of function {node.domain}.{node.op_type} does not compute "
                                f"the op (relative deviation {dev:.3g} on probe inputs); onnxruntime would run the "
                                "body, s4dc compiles the op: refusing rather than compiling something different")
    done.add(key)


def _evaluate(fe, node: onnx.NodeProto, fn: onnx.FunctionProto, probes: dict[str, np.ndarray]) -> np.ndarray:
    call = helper.make_node(node.op_type, list(fn.input), ["y"], domain=node.domain)
    call.attribute.extend(node.attribute)
    graph = helper.make_graph(
        [call], "probe", [helper.make_tensor_value_info(k, TensorProto.FLOAT, np.shape(probes[k])) for k in fn.input],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    opsets = [helper.make_opsetid(o.domain, o.version) for o in fe.model.opset_import]
    model = helper.make_model(graph, opset_imports=opsets, functions=[fn])
    model.ir_version = fe.model.ir_version
    try:
        for n in fn.node:  # constants inside the body: same checks as the model's own
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    tensor_array(a.t, f"{where(node)}: function body {where(n)}")
        _check_sizes(onnx.shape_inference.infer_shapes(onnx.inliner.inline_local_functions(model)), where(node))
        import onnxruntime as ort

        sess = ort.InferenceSession(model.SerializeToString(), _session_options(), providers=["CPUExecutionProvider"])
        out = sess.run(None, {k: np.asarray(v, np.float32) for k, v in probes.items()})[0]
    except S4dcError as e:
        raise FunctionBodyError(f"{where(node)}: function body refused ({e})") from None
    except Exception as e:
        raise FunctionBodyError(f"{where(node)}: the body of function {node.domain}.{node.op_type} cannot be "
                                f"evaluated on probe inputs ({type(e).__name__}: {first_line(e)})") from None
    return np.asarray(out, np.float64)


def _session_options():
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4  # quiet: a broken body is reported as our one-line error
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return so
