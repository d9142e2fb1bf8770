"""lru-pytorch 0.1.3 `LRU_pytorch.LRU.LRU` (Orvieto et al.'s Linear Recurrent Unit).

Read from its source (`LRU_pytorch/LRU.py`), never imported. Parameters
`nu_log`, `theta_log`, `gamma_log` (P,), `B` (P, H_in) and `C` (H_out, P)
complex, `D` (H_out, H_in); its forward, a loop over batch and time:

    lam = exp(-exp(nu_log)) (cos(exp(theta_log)) + i sin(exp(theta_log)))
    x_t = lam x_{t-1} + exp(gamma_log) B u_t,   y_t = Re(C x_t) + D u_t

which is s4dc.MIMODiscrete with B scaled by gamma and C/2. Each sequence of a
batch starts from zero; the first one from the module's `state` attribute
(zero unless a call with `state=` left it), so a nonzero one, or a call
with `state=`, is refused.
"""
from __future__ import annotations

import numpy as np
import torch.nn as nn

from s4dc.errors import ExportError
from s4dc.torch.adapters import register
from s4dc.torch.adapters.mimo import MIMOCore, c128, f64, label, stable


def params(lab: str, layer: nn.Module) -> dict[str, np.ndarray]:
    """MIMODiscrete parameters of an lru-pytorch LRU layer."""
    lam = np.exp(-np.exp(f64(layer.nu_log))) * np.exp(1j * np.exp(f64(layer.theta_log)))
    B = c128(layer.B) * np.exp(f64(layer.gamma_log))[:, None]
    C = c128(layer.C) / 2.0
    p = {"lam": lam, "B": B, "C": C, "D": f64(layer.D), "bias": np.zeros(C.shape[0])}
    return stable(lab, "MIMODiscrete", p, "exp(-exp(nu_log) + i exp(theta_log))")


@register("LRU_pytorch.LRU.LRU", library="lru-pytorch", layer="LRU")
def adapt(name: str, layer: nn.Module, args: tuple) -> nn.Module:
    lab = label(name, layer)
    state = getattr(layer, "state", None)
    if state is not None and bool((c128(state) != 0).any()):
        raise ExportError(f"{lab}: its state attribute is not zero (left by a call with state=); a stream "
                          "starts from zero")

    def check(rest, kwargs):  # forward(input, state=None)
        if kwargs.get("state", rest[0] if rest else None) is not None:
            raise ExportError(f"{lab}: called with state= (an initial state); a stream starts from zero")
    return MIMOCore("MIMODiscrete", params(lab, layer), check)
