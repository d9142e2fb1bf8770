"""`export(model, example_input, path)`: PyTorch state space models to ONNX
that s4dc compiles.

Neither torch exporter handles the complex tensors an S4D kernel is built
from. This one replaces every state space layer by a module that emits
s4dc's canonical node (`s4dc.torch.emit`; a model-local ONNX function that
onnxruntime runs) and leaves the rest of the model to torch's exporter:

* layers an exact adapter knows (`s4dc.torch.adapters`: s4dc's NS4D, the
  state-spaces S4D, lrnnx's S4D, S5, LRU and Centaurus, s5-pytorch's S5,
  lru-pytorch's LRU), read from their own parameters;
* any other module mapping (batch, time, features) to (batch, time,
  features) that mixes time steps, or the modules named in `ssm_modules`:
  measured (`s4dc.torch.measured`: proved linear, time-invariant and causal
  by probes, realized from its impulse response by the stable kernel fit),
  or refused naming the module and the measured deviation.

The user's model is not copied (a deepcopy fails on weight_norm and
non-leaf buffers) and not modified: the replacements are swapped in for the
torch export and swapped back. Every replacement is checked against the
layer it replaces, and the whole export in onnxruntime (when installed)
against the model's output on `example_input`, before anything is written.
"""
from __future__ import annotations

import inspect

import contextlib
import io
import os
import warnings
from typing import Iterable

import numpy as np
import onnx
import torch
import torch.nn as nn

from s4dc.atomic import write_atomic
from s4dc.errors import ExportError, InternalError, S4dcError
from s4dc.frontend.canonical import DOMAIN, function_proto
from s4dc.torch import emit as _emit
from s4dc.torch.adapters import find_layers
from s4dc.torch.adapters.state_spaces import find_s4d, label
from s4dc.torch.errors import cause_text
from s4dc.torch.measured import layout_of, realize

MATCH_TOL = 1e-3   # relative: a replacement (float64 node) vs the float32 layer it replaces
CHECK_TOL = 1e-4   # relative, exported ONNX vs torch
EXPORTERS = ("dynamo", "torchscript")
# Scope metadata torch's dynamo exporter writes on each node, kept so that a
# refusal names the torch module (the stack traces and FX node text are not
# reproducible: local paths, generated code).
KEEP_METADATA = ("pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy")
# Activations Loihi 2 cannot run after a state space layer (n-S4D uses ReLU).
SMOOTH = (nn.GELU, nn.GLU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Mish, nn.ELU, nn.SELU, nn.Softplus,
          nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.PReLU)

__all__ = ["export", "find_s4d", "CHECK_TOL", "EXPORTERS"]


def export(model: nn.Module, example_input: torch.Tensor, path: "str | os.PathLike | None" = None,
           *, opset: int = 18, exporter: str = "dynamo",
           ssm_modules: "Iterable[str | nn.Module] | None" = None) -> onnx.ModelProto:
    """Write `model` as ONNX that `s4dc.compile` reads; returns the model.

    `example_input`: (batch, time, features) as the model takes it; the batch
    axis is dynamic in the export, the time length is the example's.
    `exporter`: torch's "dynamo" (torch.export based; the default, as in
    torch 2.13) or "torchscript" (the legacy one). `ssm_modules`: names (or
    the modules) to realize by measurement; when None, every module no
    adapter knows that mixes time steps is measured. Every error is an
    ExportError naming the module.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter '{exporter}' is not one of {', '.join(EXPORTERS)}")
    was_training = model.training
    model.eval()
    try:
        return _export(model, example_input, path, opset, exporter, ssm_modules)
    except S4dcError:
        raise
    except Exception as e:  # noqa: BLE001 - the boundary: every torch call inside is already wrapped
        raise InternalError(f"s4dc.torch.export: internal error in s4dc (a bug; please report it): "
                            f"{cause_text(e)}") from e
    finally:
        model.train(was_training)


def _export(model, x, path, opset, exporter, ssm_modules) -> onnx.ModelProto:
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        raise ExportError(f"example_input must be a (batch, time, features) tensor, got "
                          f"{getattr(x, 'shape', type(x).__name__)}")
    T = int(x.shape[1])
    mods = dict(model.named_modules())
    adapted = find_layers(model)
    named = _named(model, mods, ssm_modules)
    calls, order = _run_recorded(model, x)
    want = calls.pop("__output__")
    repl: dict[str, nn.Module] = {}
    first_ssm = None
    for name, layer, adapt in adapted:
        args = _args_of(calls, name, layer)
        _refuse_bidirectional(name, layer)
        repl[name] = _checked(name, layer, _guarded(name, layer, lambda: adapt(name, layer, args)), args)
        first_ssm = min(first_ssm if first_ssm is not None else len(order), order.index(name))
    taken = list(repl)
    for name in (named if ssm_modules is not None else _time_mixers(model, mods, calls, taken, T)):
        layer = mods[name]
        args = _args_of(calls, name, layer)
        _refuse_bidirectional(name, layer)
        new, _ = _guarded(name, layer, lambda: realize(name, layer, args, T))
        repl[name] = _checked(name, layer, new, args)
        first_ssm = min(first_ssm if first_ssm is not None else len(order), order.index(name))
    if first_ssm is not None:
        _refuse_smooth_activations(mods, order, first_ssm, repl)
    with _swapped(model, mods, repl) as m:
        proto = _torch_export(m, x, opset, exporter)
    _check_against(proto, x, want)
    if path is not None:
        write_atomic(path, lambda f: f.write(proto.SerializeToString()))
    return proto


def _named(model: nn.Module, mods: dict[str, nn.Module], ssm_modules) -> list[str]:
    if ssm_modules is None:
        return []
    if isinstance(ssm_modules, (str, nn.Module)):
        ssm_modules = [ssm_modules]
    by_id = {id(m): n for n, m in mods.items()}
    names = []
    for s in ssm_modules:
        n = by_id.get(id(s)) if isinstance(s, nn.Module) else s
        if n is None or n not in mods:
            what = f"'{s}'" if isinstance(s, str) else f"a {type(s).__name__}"
            raise ExportError(f"ssm_modules: {what} is not a module of the model")
        names.append(n)
    return names


def _run_recorded(model: nn.Module, x: torch.Tensor) -> tuple[dict, list[str]]:
    """Run the model once: each module's first positional arguments, the
    order in which modules are first called, and the output ('__output__')."""
    calls: dict = {}
    order: list[str] = []

    def pre(name):
        def hook(mod, args, kwargs):
            if name not in calls:
                calls[name] = _positional(mod, args, kwargs)
                order.append(name)
        return hook

    hooks = [m.register_forward_pre_hook(pre(n), with_kwargs=True) for n, m in model.named_modules()]
    try:
        with torch.no_grad():
            calls["__output__"] = model(x)
    except S4dcError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's model failing on its own example
        raise ExportError(f"the model fails on example_input of shape {tuple(x.shape)} ({cause_text(e)})") from None
    finally:
        for h in hooks:
            h.remove()
    return calls, order


def _positional(mod: nn.Module, args: tuple, kwargs: dict) -> tuple:
    """A call's arguments as positional ones, in forward's order (a layer
    called as `layer(x, step_scale=0.5)` is adapted as `layer(x, 0.5)`), up
    to the last one given; keyword-only arguments are left out, as before."""
    if not kwargs:
        return args
    try:
        sig = inspect.signature(mod.forward)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return args
    pos = [p for p in sig.parameters.values()
           if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    last = max((i for i, p in enumerate(pos) if p.name in bound.arguments), default=-1)
    out = []
    for p in pos[:last + 1]:
        if p.name in bound.arguments:
            out.append(bound.arguments[p.name])
        elif p.default is not inspect.Parameter.empty:
            out.append(p.default)
        else:
            return args
    return tuple(out)


def _args_of(calls: dict, name: str, layer: nn.Module) -> tuple:
    if name not in calls:
        raise ExportError(f"{label(name, layer)} is never called on the example input")
    return calls[name]


def _refuse_bidirectional(name: str, layer: nn.Module) -> None:
    if getattr(layer, "bidirectional", False) is True:
        raise ExportError(f"{label(name, layer)} is bidirectional (bidirectional=True): it reads future "
                          "time steps, so it is not causal and cannot stream on Loihi 2")


def _guarded(name: str, layer: nn.Module, fn):
    """fn(), with anything but an S4dcError (a layer attribute an adapter reads
    that a library version lacks, the layer's own failure) named by the module."""
    try:
        return fn()
    except S4dcError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{label(name, layer)}: cannot be read as a state space layer ({cause_text(e)})") from None


def _checked(name: str, layer: nn.Module, new: nn.Module, args: tuple) -> nn.Module:
    """`new`, after checking that it computes what `layer` computes on `args`."""
    try:
        with torch.no_grad():
            a, b = _first_tensor(new(*args)), _first_tensor(layer(*args))
    except S4dcError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{label(name, layer)}: its replacement by s4dc's nodes fails ({cause_text(e)})") from None
    if a.shape != b.shape or _rel(a, b) > MATCH_TOL:
        err = _rel(a, b) if a.shape == b.shape else float("inf")
        raise ExportError(f"{label(name, layer)}: after replacing its state space by s4dc's node the module's "
                          f"output differs from the original (relative error {err:.2e})")
    return new


def _time_mixers(model: nn.Module, mods: dict[str, nn.Module], calls: dict, taken: list[str],
                 T: int) -> list[str]:
    """Modules to measure when the user names none: not torch's own, holding
    parameters or buffers (their own or their children's; a library layer
    may keep them in an inner module), called with one (batch, time,
    features) tensor, outside and above no adapted layer, and whose output at
    other time steps moves when one step's input does (pointwise modules
    stay as they are). Innermost first; an enclosing module is not measured
    again."""
    rel = lambda a, b: a == b or a.startswith(b + ".") or b == ""  # noqa: E731 - a inside b
    out: list[str] = []
    names = [n for n in mods if n and n in calls]
    for name in sorted(names, key=lambda n: -n.count(".")):
        m, args = mods[name], calls[name]
        if type(m).__module__.startswith("torch.") or not _has_tensors(m):
            continue
        if any(rel(name, t) or rel(t, name) for t in taken + out):
            continue
        if len(args) != 1 or not isinstance(args[0], torch.Tensor) or layout_of(args[0], T) is None:
            continue
        if _mixes_time(m, args[0], T):
            out.append(name)
    return sorted(out, key=list(mods).index)


def _has_tensors(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def _mixes_time(m: nn.Module, x: torch.Tensor, T: int) -> bool:
    t_axis = 1 if layout_of(x, T) == "BLH" else 2
    base = x[:1].clone()
    bumped = base.clone()
    idx = [slice(None)] * 3
    idx[t_axis] = T // 2
    bumped[tuple(idx)] += 1.0 + float(base.abs().max())
    try:
        with torch.no_grad():
            a, b = _first_tensor(m(base)), _first_tensor(m(bumped))
    except Exception:  # noqa: BLE001 - a module that cannot take a probe is left to torch's exporter
        return False
    if a.shape != b.shape or a.dim() != 3:
        return False
    d = (a - b).abs()
    keep = [slice(None)] * 3
    keep[t_axis] = [t for t in range(a.shape[t_axis]) if t != T // 2]
    scale = float(d.max()) or 1.0
    return float(d[tuple(keep)].max()) > 1e-6 * scale if a.shape[t_axis] > 1 else False


def _refuse_smooth_activations(mods: dict[str, nn.Module], order: list[str], first: int,
                               repl: dict[str, nn.Module]) -> None:
    """GELU, GLU and other smooth activations after the first state space layer."""
    for name in order[first:]:
        m = mods[name]
        if isinstance(m, SMOOTH):
            ssm = order[first]
            raise ExportError(f"{label(name, m)} follows the state space layer '{ssm}': Loihi 2 runs ReLU "
                              "activations only (the n-S4D model); replace it with nn.ReLU, fine-tune the "
                              "model in float, export it again, and recover quantization loss with "
                              "s4dc.torch.qat.QATNetwork (docs/torch.md)")


@contextlib.contextmanager
def _swapped(model: nn.Module, mods: dict[str, nn.Module], repl: dict[str, nn.Module]):
    """The model with `repl` in place of the named modules, put back afterwards."""
    if "" in repl:
        yield repl[""]
        return
    saved = []
    try:
        for name, new in repl.items():
            parent, _, attr = name.rpartition(".")
            owner = mods[parent] if parent else model
            saved.append((owner, attr, getattr(owner, attr)))
            setattr(owner, attr, new)
        yield model
    finally:
        for owner, attr, old in reversed(saved):
            setattr(owner, attr, old)


def _first_tensor(out) -> torch.Tensor:
    while isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"the model's output is a {type(out).__name__}, not a tensor")
    return out.detach().cpu().double()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def _torch_export(m: nn.Module, x: torch.Tensor, opset: int, exporter: str) -> onnx.ModelProto:
    _emit.ACTIVE.append(exporter)
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
        ours = _own_error(e)
        if ours is not None:  # one of s4dc's replacements refused, inside torch's tracing
            raise ours from None
        raise ExportError(f"torch's {exporter} exporter failed on the model after s4dc's nodes were put in "
                          f"({cause_text(e)})") from None
    finally:
        _emit.ACTIVE.pop()
    for n in proto.graph.node:  # only the scope metadata (KEEP_METADATA) is reproducible
        keep = [p for p in n.metadata_props if p.key in KEEP_METADATA]
        del n.metadata_props[:]
        n.metadata_props.extend(keep)
    used = sorted({n.op_type for n in proto.graph.node if n.domain == DOMAIN})
    for i, n in enumerate(n for n in proto.graph.node if n.domain == DOMAIN):
        n.name = n.name or f"s4d_{i}"
    del proto.functions[:]
    proto.functions.extend(function_proto(op, opset) for op in used)
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001 - onnx's checker raises its own kinds
        raise ExportError(f"the exported model fails onnx's checker ({cause_text(e)})") from None
    return proto


def _own_error(e: BaseException) -> S4dcError | None:
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, S4dcError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _check_against(proto: onnx.ModelProto, x: torch.Tensor, want) -> None:
    try:
        import onnxruntime as ort
    except ImportError:  # the export itself needs no onnxruntime
        return
    try:
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"x": x.detach().cpu().numpy().astype(np.float32)})[0]
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own kinds
        raise ExportError(f"onnxruntime cannot run the exported model ({cause_text(e)})") from None
    w = _first_tensor(want).numpy()
    err = float(np.abs(got - w).max() / max(np.abs(w).max(), 1e-12)) if got.shape == w.shape else np.inf
    if err > CHECK_TOL:
        raise ExportError(f"exported ONNX disagrees with the torch model on example_input "
                          f"(relative error {err:.2e} > {CHECK_TOL:g})")
