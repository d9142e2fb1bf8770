"""`export(model, example_input, path)`: PyTorch S4D models to ONNX that s4dc
compiles exactly.

Neither torch exporter handles the complex tensors an S4D kernel is built
from. This one writes every S4D layer as a canonical `s4dc.S4D` node (a
model-local ONNX function; onnxruntime runs it) with the layer's continuous
parameters as constants, and leaves the rest of the model to torch's
exporter. Layers it recognizes:

* `s4dc.torch.NS4D`;
* any module shaped like the state-spaces S4D layer: parameters `log_dt`,
  `log_A_real`, `A_imag`, `C` (real view of complex) in one module and `D`
  in it or its parent. Its forward is traced with torch.fx and every
  intermediate value is compared with `causal_conv(v, K) + D v` computed here
  from the parameters (the published equations) for every candidate input
  `v`; the first match is replaced by the canonical node and the kernel
  computation is dropped. A forward that never computes that is an error,
  not a guess.

The export is checked before it is written: onnxruntime (when installed) must
reproduce the model's output on `example_input`.
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn as nn

from s4dc.atomic import write_atomic
from s4dc.frontend.canonical import DOMAIN, function_proto
from s4dc.errors import ExportError
from s4dc.targets.float_exec import causal_conv as causal_conv_np

KERNEL_PARAMS = ("log_dt", "log_A_real", "A_imag", "C")
MARKS = ("log_dt", "log_A_real", "A_imag")  # names that say "this is an S4D kernel"
MATCH_TOL = 1e-3   # relative, float32 model vs float64 equations, to recognize the S4D output
CHECK_TOL = 1e-4   # relative, exported ONNX vs torch


EXPORTERS = ("dynamo", "torchscript")
_ACTIVE: list[str] = []  # the exporter running s4dc.torch.export's torch export, if any


def _zoh_output(u: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """causal_conv(u, K) + D u in float64 for u (batch, T, H)."""
    T = u.shape[1]
    lam = np.exp(p["dt"][:, None] * p["A"])
    bbar = (lam - 1.0) / p["A"] * p["B"]
    vand = lam[:, :, None] ** np.arange(T)
    k = 2.0 * np.einsum("hn,hnl->hl", p["C"] * bbar, vand).real      # (H, T)
    y = causal_conv_np(u, k)
    return y + u * p["D"]


class S4DExportOp(torch.autograd.Function):
    """One canonical s4dc.S4D node in the exported graph; in eager mode the
    same function in float64."""

    @staticmethod
    def forward(ctx, u, dt, a_re, a_im, b_re, b_im, c_re, c_im, d):  # noqa: D401
        p = {"dt": dt.double().numpy(), "A": a_re.double().numpy() + 1j * a_im.double().numpy(),
             "B": b_re.double().numpy() + 1j * b_im.double().numpy(),
             "C": c_re.double().numpy() + 1j * c_im.double().numpy(), "D": d.double().numpy()}
        return torch.from_numpy(_zoh_output(u.detach().cpu().double().numpy(), p)).to(device=u.device, dtype=u.dtype)

    @staticmethod
    def symbolic(g, u, dt, a_re, a_im, b_re, b_im, c_re, c_im, d):
        y = g.op(f"{DOMAIN}::S4D", u, dt, a_re, a_im, b_re, b_im, c_re, c_im, d)
        y.setType(u.type())
        return y

    @staticmethod
    def emit(u: torch.Tensor, p: dict[str, np.ndarray]) -> torch.Tensor:
        """The node for channels-last u (batch, T, H) and float64 params."""
        vals = [p["dt"], p["A"].real, p["A"].imag, p["B"].real, p["B"].imag, p["C"].real, p["C"].imag, p["D"]]
        ts = [torch.tensor(np.asarray(v, np.float32)) for v in vals]
        if _ACTIVE and _ACTIVE[-1] == "dynamo":  # torch.export: an ONNX node of our domain, as it stands
            return torch.onnx.ops.symbolic(f"{DOMAIN}::S4D", (u, *ts), {}, dtype=u.dtype, shape=u.shape, version=1)
        return S4DExportOp.apply(u, *ts)


class S4DCore(nn.Module):
    """causal_conv(u, K) + D u, as it stands in a traced S4D module: `layout_in`
    and `layout_out` are 'BHL' (channels first) or 'BLH'."""

    def __init__(self, params: dict[str, np.ndarray], layout_in: str, layout_out: str) -> None:
        super().__init__()
        self.params, self.layout_in, self.layout_out = params, layout_in, layout_out

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u.transpose(1, 2) if self.layout_in == "BHL" else u
        y = S4DExportOp.emit(u, self.params)
        return y.transpose(1, 2) if self.layout_out == "BHL" else y


# --- finding S4D-shaped modules ---------------------------------------------------------
def _own(m: nn.Module) -> dict[str, torch.Tensor]:
    d = dict(m.named_parameters(recurse=False))
    d.update(dict(m.named_buffers(recurse=False)))
    return d


def find_s4d(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """(qualified name, layer holding D, module holding the kernel parameters)
    of every S4D-shaped module; ExportError for one that is only half so."""
    mods = dict(model.named_modules())
    found = []
    for name, m in mods.items():
        own = _own(m)
        if not any(k in own for k in MARKS):
            continue
        label = f"module '{name or '<root>'}' ({type(m).__name__})"
        has = [k for k in KERNEL_PARAMS + ("D",) if k in own]
        parent_name = name.rpartition(".")[0] if name else None
        parent = mods.get(parent_name) if parent_name is not None else None
        layer = m if "D" in own else (parent if parent is not None and "D" in _own(parent) else None)
        missing = [k for k in KERNEL_PARAMS if k not in own] + (["D (here or in its parent)"] if layer is None else [])
        if missing:
            raise ExportError(f"{label} looks like an S4D layer (has {', '.join(has)}) but has no "
                              f"{', '.join(missing)}")
        _check_shapes(label, own, _own(layer)["D"])
        found.append((name if layer is m else parent_name, layer, m))
    return found


def _check_shapes(label: str, own: dict[str, torch.Tensor], D: torch.Tensor) -> None:
    dt = own["log_dt"]
    if dt.dim() != 1:
        raise ExportError(f"{label}: log_dt has shape {tuple(dt.shape)}, expected (H,)")
    H = dt.shape[0]
    ar = own["log_A_real"]
    if ar.dim() != 2 or ar.shape[0] != H:
        raise ExportError(f"{label}: log_A_real has shape {tuple(ar.shape)}, expected (H={H}, N/2)")
    n2 = ar.shape[1]
    if tuple(own["A_imag"].shape) != (H, n2):
        raise ExportError(f"{label}: A_imag has shape {tuple(own['A_imag'].shape)}, expected ({H}, {n2})")
    C = own["C"]
    want = (H, n2) if torch.is_complex(C) else (H, n2, 2)
    if tuple(C.shape) != want:
        raise ExportError(f"{label}: C has shape {tuple(C.shape)}, expected {want} "
                          "(complex C as a real view; one channel)")
    if tuple(D.shape) != (H,):
        raise ExportError(f"{label}: D has shape {tuple(D.shape)}, expected ({H},)")


# --- replacing the kernel computation of a traced module --------------------------------
def _core_of(name: str, layer: nn.Module, params: dict[str, np.ndarray], args: tuple) -> nn.Module:
    """`layer` with its S4D output computed by an S4DCore (see module doc)."""
    import torch.fx as fx

    label = f"module '{name or '<root>'}' ({type(layer).__name__})"
    try:
        gm = fx.symbolic_trace(layer)
    except Exception as e:  # noqa: BLE001 - any tracing failure is reported the same way
        raise ExportError(f"{label}: torch.fx cannot trace its forward ({str(e).splitlines()[0][:160]})") from None
    values: dict[Any, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            values[n] = r
            return r

    with torch.no_grad():
        ref_out = Recorder(gm).run(*args)
    H = params["D"].shape[0]
    order = list(gm.graph.nodes)
    cands = [n for n in order if isinstance(values.get(n), torch.Tensor) and values[n].dim() == 3
             and values[n].is_floating_point()]
    for i, n_u in enumerate(cands):
        v = values[n_u].detach().cpu().double().numpy()
        for lay_in in ("BHL", "BLH"):
            if v.shape[1 if lay_in == "BHL" else 2] != H:
                continue
            u = v.transpose(0, 2, 1) if lay_in == "BHL" else v
            want = _zoh_output(u, params)  # (B, T, H)
            scale = max(float(np.abs(want).max()), 1e-12)
            for n_y in cands[i + 1:]:
                y = values[n_y].detach().cpu().double().numpy()
                for lay_out, w in (("BLH", want), ("BHL", want.transpose(0, 2, 1))):
                    if y.shape == w.shape and np.abs(y - w).max() <= MATCH_TOL * scale:
                        return _rewrite(label, gm, n_u, n_y, S4DCore(params, lay_in, lay_out), args, ref_out)
    raise ExportError(f"{label}: no value in its forward equals causal_conv(u, K) + D u for the kernel "
                      "K its parameters define (ZOH, published S4D equations); cannot export it exactly")


def _rewrite(label: str, gm, n_u, n_y, core: S4DCore, args: tuple, ref_out) -> nn.Module:
    gm.add_submodule("s4dc_core", core)
    with gm.graph.inserting_after(n_y):
        new = gm.graph.call_module("s4dc_core", (n_u,))
    n_y.replace_all_uses_with(new)
    new.args = (n_u,)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    with torch.no_grad():
        out = gm(*args)
    a, b = _first_tensor(out), _first_tensor(ref_out)
    if a.shape != b.shape or _rel(a, b) > MATCH_TOL:
        raise ExportError(f"{label}: after replacing its S4D kernel the module's output differs from the "
                          f"original (relative error {_rel(a, b):.2e})")
    return gm


def _first_tensor(out):
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out.detach().cpu().double()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


# --- export ------------------------------------------------------------------------------
def export(model: nn.Module, example_input: torch.Tensor, path: "str | os.PathLike | None" = None,
           *, opset: int = 18, exporter: str = "dynamo") -> onnx.ModelProto:
    """Write `model` as ONNX that `s4dc.compile` reads exactly; returns the model.

    `example_input`: (batch, time, features) as the model takes it; the batch
    axis is dynamic in the export, the time length is the example's. The
    user's model is not modified. `exporter`: torch's "dynamo" (torch.export
    based, torch's default) or "torchscript" (the legacy one).
    """
    from s4dc.torch.layers import NS4D, s4d_params

    if exporter not in EXPORTERS:
        raise ExportError(f"exporter '{exporter}' is not one of {', '.join(EXPORTERS)}")

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            want = model(example_input)
        found = find_s4d(model)
        m = copy.deepcopy(model)
        inputs = _capture_inputs(model, [layer for _, layer, _ in found if not isinstance(layer, NS4D)], example_input)
        mods = dict(m.named_modules())
        for name, layer, owner in found:
            if isinstance(layer, NS4D):  # its forward is ours: the canonical node and its ReLU
                lay = "BHL" if layer.transposed else "BLH"
                core = S4DCore(s4d_params(layer), lay, lay)
                gm = nn.Sequential(core, nn.ReLU()) if layer.activation else core
            else:
                gm = _core_of(name, layer, s4d_params(layer, owner), inputs[id(layer)])
            _replace(m, mods, name, gm)
            if not name:
                m = gm
        proto = _torch_export(m, example_input, opset, exporter)
    finally:
        model.train(was_training)
    _check_against(proto, example_input, want)
    if path is not None:
        write_atomic(path, lambda f: f.write(proto.SerializeToString()))
    return proto


def _capture_inputs(model: nn.Module, layers: list[nn.Module], x: torch.Tensor) -> dict[int, tuple]:
    got: dict[int, tuple] = {}
    hooks = [l.register_forward_pre_hook(lambda mod, args, _id=id(l): got.setdefault(_id, args)) for l in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    for l in layers:
        if id(l) not in got:
            raise ExportError(f"module {type(l).__name__} is never called on the example input")
    return got


def _replace(root: nn.Module, mods: dict[str, nn.Module], name: str, new: nn.Module) -> None:
    if not name:
        return
    parent, _, attr = name.rpartition(".")
    setattr(mods[parent] if parent else root, attr, new)


def _torch_export(m: nn.Module, x: torch.Tensor, opset: int, exporter: str) -> onnx.ModelProto:
    _ACTIVE.append(exporter)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # deprecation and shape-inference warnings; the result is checked
            if exporter == "dynamo":
                prog = torch.onnx.export(m, (x,), dynamo=True, opset_version=opset, input_names=["x"],
                                         output_names=["y"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                         verbose=False)
                proto = prog.model_proto
            else:
                buf = io.BytesIO()
                torch.onnx.export(m, (x,), buf, dynamo=False, opset_version=opset, input_names=["x"],
                                  output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
                proto = onnx.load_from_string(buf.getvalue())
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - torch's exporters raise many kinds
        raise ExportError(f"torch's {exporter} exporter failed on the model after s4dc's S4D nodes were put in "
                          f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})") from None
    finally:
        _ACTIVE.pop()
    for n in proto.graph.node:  # torch's stack traces name FX's generated code and local paths:
        keep = [p for p in n.metadata_props if not p.key.startswith("pkg.torch.")]  # not reproducible
        del n.metadata_props[:]
        n.metadata_props.extend(keep)
    used = sorted({n.op_type for n in proto.graph.node if n.domain == DOMAIN})
    for i, n in enumerate(n for n in proto.graph.node if n.domain == DOMAIN):
        n.name = n.name or f"s4d_{i}"
    del proto.functions[:]
    proto.functions.extend(function_proto(op, opset) for op in used)
    onnx.checker.check_model(proto)
    return proto


def _check_against(proto: onnx.ModelProto, x: torch.Tensor, want) -> None:
    try:
        import onnxruntime as ort
    except ImportError:  # the export itself needs no onnxruntime
        return
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.detach().cpu().numpy().astype(np.float32)})[0]
    w = _first_tensor(want).numpy()
    err = float(np.abs(got - w).max() / max(np.abs(w).max(), 1e-12)) if got.shape == w.shape else np.inf
    if err > CHECK_TOL:
        raise ExportError(f"exported ONNX disagrees with the torch model on example_input "
                          f"(relative error {err:.2e} > {CHECK_TOL:g})")
