"""The state-spaces S4D layer (Gu et al. 2022, `models/s4/s4d.py`), which users
copy into their own code, so it has no fixed class path: found by its
parameters `log_dt`, `log_A_real`, `A_imag`, `C` in one module and `D` in
it or its parent (docs/torch.md). Its forward is traced with torch.fx and the
value equal to causal_conv(v, K) + D v (published ZOH equations, computed
here from the parameters) is replaced by the canonical node; the rest of
its forward stays as written.

With `channels > 1` (state-spaces' multi-head kernel: C (channels, H, N/2, 2),
D (channels, H), the output rearranged from (B, channels, H, L) to
(B, channels * H, L)) the layer is MIMO with structure: H * N/2 modes, mode
(h, n) driven by channel h alone, read by every channel's C. It is written
by the canonical writer's own mapping (`s4d_channels_mimo`, what `CanonicalModel.s4d_channels` writes) as an
`s4dc.MIMO` node, and the value matched is the rearranged output.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from s4dc.errors import ExportError
from s4dc.frontend.canonical import s4d_channels_mimo
from s4dc.torch.adapters import ADAPTERS, class_path, register_finder
from s4dc.torch.emit import SSMCore, reference

KERNEL_PARAMS = ("log_dt", "log_A_real", "A_imag", "C")
# names that say "this is an S4D kernel" when two of them are there (one alone is
# too common: lrnnx's DPLR S4 has A_imag, S5-style layers log_dt; those go to the measured path)
MARKS = ("log_dt", "log_A_real", "A_imag")
MATCH_TOL = 1e-3   # relative, float32 model vs float64 equations, to recognize the S4D output


def label(name: str, m: nn.Module) -> str:
    return f"module '{name or '<root>'}' ({type(m).__name__})"


def _own(m: nn.Module) -> dict[str, torch.Tensor]:
    d = dict(m.named_parameters(recurse=False))
    d.update(dict(m.named_buffers(recurse=False)))
    return d


def find_s4d(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """(qualified name, layer holding D, module holding the kernel parameters)
    of every S4D-shaped module that no class-path adapter claims; ExportError
    for one that is only half so."""
    mods = dict(model.named_modules())
    claimed = [n for n, m in mods.items() if class_path(m) in ADAPTERS]
    found = []
    for name, m in mods.items():
        own = _own(m)
        if sum(k in own for k in MARKS) < 2 or any(name == c or name.startswith(c + ".") or c == ""
                                                   for c in claimed):
            continue
        lab = label(name, m)
        has = [k for k in KERNEL_PARAMS + ("D",) if k in own]
        parent_name = name.rpartition(".")[0] if name else None
        parent = mods.get(parent_name) if parent_name is not None else None
        layer = m if "D" in own else (parent if parent is not None and "D" in _own(parent) else None)
        missing = [k for k in KERNEL_PARAMS if k not in own] + (["D (here or in its parent)"] if layer is None else [])
        if missing:
            raise ExportError(f"{lab} looks like an S4D layer (has {', '.join(has)}) but has no "
                              f"{', '.join(missing)}")
        _check_shapes(lab, own, _own(layer)["D"])
        found.append((name if layer is m else parent_name, layer, m))
    return found


def _check_shapes(lab: str, own: dict[str, torch.Tensor], D: torch.Tensor) -> None:
    dt = own["log_dt"]
    if dt.dim() != 1:
        raise ExportError(f"{lab}: log_dt has shape {tuple(dt.shape)}, expected (H,)")
    H = dt.shape[0]
    C = own["C"]
    ch = C.shape[0] if C.dim() == (3 if torch.is_complex(C) else 4) else None  # channels, when C has the axis
    ar = own["log_A_real"]
    if ar.dim() != 2 or ar.shape[0] != H:
        raise ExportError(f"{lab}: log_A_real has shape {tuple(ar.shape)}, expected (H={H}, N/2)")
    n2 = ar.shape[1]
    if tuple(own["A_imag"].shape) != (H, n2):
        raise ExportError(f"{lab}: A_imag has shape {tuple(own['A_imag'].shape)}, expected ({H}, {n2})")
    want = ((H, n2) if torch.is_complex(C) else (H, n2, 2))
    if ch is not None:
        want = (ch,) + want
    if tuple(C.shape) != want:
        raise ExportError(f"{lab}: C has shape {tuple(C.shape)}, expected {want} "
                          "(complex C as a real view; channels first if more than one)")
    d_want = (H,) if ch is None else (ch, H)
    if tuple(D.shape) != d_want:
        raise ExportError(f"{lab}: D has shape {tuple(D.shape)}, expected {d_want}")


@register_finder
def _finder(model: nn.Module) -> list:
    from s4dc.torch.layers import s4d_params

    def adapter(owner: nn.Module):
        return lambda name, layer, args: core_of(name, layer, s4d_params(layer, owner), args)
    return [(name, layer, adapter(owner)) for name, layer, owner in find_s4d(model)]


def core_of(name: str, layer: nn.Module, params: dict[str, np.ndarray], args: tuple) -> nn.Module:
    """`layer` with its S4D output computed by an SSMCore (see module doc)."""
    import torch.fx as fx

    lab = label(name, layer)
    try:
        gm = fx.symbolic_trace(layer)
    except Exception as e:  # noqa: BLE001 - any tracing failure is reported the same way
        raise ExportError(f"{lab}: torch.fx cannot trace its forward ({str(e).splitlines()[0][:160]})") from None
    values: dict[Any, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            values[n] = r
            return r

    with torch.no_grad():
        Recorder(gm).run(*args)
    H = params["A"].shape[0]
    op, ref_p = ("S4D", params) if params["C"].ndim == 2 else ("MIMO", channels_mimo(params))
    order = list(gm.graph.nodes)
    cands = [n for n in order if isinstance(values.get(n), torch.Tensor) and values[n].dim() == 3
             and values[n].is_floating_point()]
    for i, n_u in enumerate(cands):
        v = values[n_u].detach().cpu().double().numpy()
        for lay_in in ("BHL", "BLH"):
            if v.shape[1 if lay_in == "BHL" else 2] != H:
                continue
            u = v.transpose(0, 2, 1) if lay_in == "BHL" else v
            want = reference(u, op, ref_p)  # (B, T, H), or (B, T, channels * H)
            scale = max(float(np.abs(want).max()), 1e-12)
            for n_y in cands[i + 1:]:
                y = values[n_y].detach().cpu().double().numpy()
                for lay_out, w in (("BLH", want), ("BHL", want.transpose(0, 2, 1))):
                    if y.shape == w.shape and np.abs(y - w).max() <= MATCH_TOL * scale:
                        return _rewrite(gm, n_u, n_y, SSMCore(ref_p, lay_in, lay_out, op=op))
    raise ExportError(f"{lab}: no value in its forward equals causal_conv(u, K) + D u for the kernel "
                      "K its parameters define (ZOH, published S4D equations); cannot export it exactly")


def channels_mimo(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The s4dc.MIMO parameters of a multi-channel S4D (C (channels, H, N),
    D (channels, H)), as the canonical writer maps them."""
    return s4d_channels_mimo(p["dt"], p["A"], p["B"], p["C"], p["D"])


def _rewrite(gm, n_u, n_y, core: SSMCore) -> nn.Module:
    gm.add_submodule("s4dc_core", core)
    with gm.graph.inserting_after(n_y):
        new = gm.graph.call_module("s4dc_core", (n_u,))
    n_y.replace_all_uses_with(new)
    new.args = (n_u,)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm
