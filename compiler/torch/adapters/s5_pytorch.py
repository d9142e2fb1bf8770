"""s5-pytorch 0.2.1 `s5.s5_model.S5` (Smith et al.'s S5, ported by i404788).

Read from its source (`s5/s5_model.py`), never imported. The layer keeps its
parameters in `S5.seq` (an `S5SSM`): `Lambda` (P,) complex, `B` (P, H, 2)
complex as a real view, `C` (H, P) complex (`bcInit` dense, dense_columns,
complex_normal; `factorized`: B = BP BH^T, C = CH^T CP), `D` (H,),
`log_step` (P,); the rule is `seq.discretize` (discretize_zoh or
discretize_bilinear):

    Delta = step_scale exp(log_step)                       (one step per mode)
    zoh:      lam = exp(Delta Lambda),  Bbar = (lam - 1) / Lambda B   -> s4dc.MIMO
    bilinear: lam = (1 - Delta Lambda/2)^-1 (1 + Delta Lambda/2),
              Bbar = Delta / (1 - Delta Lambda/2) B                  -> s4dc.MIMOBilinear
    degree d != 1: Bbar ** d elementwise                            -> s4dc.MIMODiscrete
    forward (vmapped over the batch): y = Re(C x) + D * u  (all P modes: C/2 here)

Refused, naming the module: `bidir=True` (it also runs the scan backwards:
not causal), `liquid=True` (Liquid-S4: lambda + B u depends on the input,
not time-invariant), a per-sequence `step_scale` tensor, an injected `state`
or `return_state=True` (a stream starts from zero and returns outputs only).
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn as nn

from s4dc.errors import ExportError
from s4dc.torch.adapters import register
from s4dc.torch.adapters.mimo import MIMOCore, c128, f64, label, real_view, stable

_RULES = {"discretize_zoh": "MIMO", "discretize_bilinear": "MIMOBilinear"}


def _step_scale(lab: str, s) -> float:
    """A scalar step_scale (a float, or a tensor holding one value)."""
    if isinstance(s, numbers.Real) and not isinstance(s, bool):
        return float(s)
    if isinstance(s, torch.Tensor) and s.numel() >= 1 and not torch.is_complex(s):
        flat = s.detach().reshape(-1)
        if bool((flat == flat[0]).all()):
            return float(flat[0])
    raise ExportError(f"{lab}: step_scale={s!r} gives the sequences different time steps; export it "
                      "with one scalar step_scale")


def params(lab: str, layer: nn.Module, step_scale: float = 1.0) -> tuple[str, dict[str, np.ndarray]]:
    """(canonical op, float64 parameters) of an s5-pytorch S5 layer."""
    seq = layer.seq
    if getattr(seq, "liquid", False):
        raise ExportError(f"{lab}: liquid=True (Liquid-S4) makes its state matrix lambda + B u depend on the "
                          "input: not a time-invariant layer, it cannot run as a state space on Loihi 2")
    if getattr(seq, "bidir", False):
        raise ExportError(f"{lab} is bidirectional (bidir=True): it reads future time steps, so it is not "
                          "causal and cannot stream on Loihi 2")
    rule = getattr(seq.discretize, "__name__", "?")
    if rule not in _RULES:
        raise ExportError(f"{lab}: discretization '{rule}' is not discretize_zoh or discretize_bilinear")
    if seq.bcInit == "factorized":
        B, C = c128(seq.BP) @ c128(seq.BH).T, c128(seq.CH).T @ c128(seq.CP)
    else:
        B, C = real_view(seq.B), c128(seq.C)
    p = {"dt": step_scale * np.exp(f64(seq.log_step)).reshape(-1), "A": c128(seq.Lambda), "B": B,
         "C": C / 2.0, "D": np.diag(f64(seq.D))}
    op = _RULES[rule]
    if int(seq.degree) != 1:  # B_bars **= degree: another input matrix of the same discrete system
        from s4dc.torch.emit import discretize

        lam, bbar = discretize(op, p)
        op, p = "MIMODiscrete", {"lam": lam, "B": bbar ** int(seq.degree), "C": p["C"], "D": p["D"],
                                 "bias": np.zeros(C.shape[0])}
    return op, stable(lab, op, p, f"its {rule[len('discretize_'):]} rule")


@register("s5.s5_model.S5", library="s5-pytorch", layer="S5")
def adapt(name: str, layer: nn.Module, args: tuple) -> nn.Module:
    lab = label(name, layer)
    scale = _step_scale(lab, args[1]) if len(args) > 1 else 1.0
    op, p = params(lab, layer, scale)

    def check(rest, kwargs):  # forward(signal, step_scale=1.0, state=None, return_state=False)
        names = ("step_scale", "state", "return_state")
        got = dict(zip(names, rest), **kwargs)
        if "step_scale" in got and _step_scale(lab, got["step_scale"]) != scale:
            raise ExportError(f"{lab}: called with another step_scale than on the example input")
        if got.get("state") is not None:
            raise ExportError(f"{lab}: called with state= (an initial state); a stream starts from zero")
        if got.get("return_state"):
            raise ExportError(f"{lab}: called with return_state=True; the compiled layer returns its outputs only")
    return MIMOCore(op, p, check)
