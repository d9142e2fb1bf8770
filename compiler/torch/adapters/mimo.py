"""What the MIMO adapters (S5, LRU: lrnnx, s5-pytorch, lru-pytorch) share:
reading parameters as float64, the stability check, the label of a module,
and the canonical node as a module.

A MIMO layer is one shared diagonal state of P modes (docs/onnx_forms.md):

    x_t = lam x_{t-1} + Bbar u_t,   y_t = 2 Re(C x_t) + D u_t

Libraries that compute `Re(C x)` over all P modes (no conjugate symmetry)
are written with C/2; D is always (H_out, H_in) (a per-channel skip is its
diagonal).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from s4dc.errors import ExportError
from s4dc.torch.adapters.state_spaces import label  # noqa: F401 - one label for every adapter
from s4dc.torch.emit import SSMCore, discretize

def f64(t: torch.Tensor) -> np.ndarray:
    """A real parameter as float64 (complex parameters: `c128`)."""
    return t.detach().cpu().double().numpy().copy()


def c128(t: torch.Tensor) -> np.ndarray:
    """A complex parameter as complex128 (a real tensor is taken as real)."""
    t = t.detach().cpu()
    return (t.to(torch.complex128) if torch.is_complex(t) else t.double()).numpy().astype(complex)


def real_view(t: torch.Tensor) -> np.ndarray:
    """A (..., 2) real view of a complex tensor as complex128."""
    v = f64(t)
    return v[..., 0] + 1j * v[..., 1]


def stable(lab: str, op: str, p: dict[str, np.ndarray], how: str) -> dict[str, np.ndarray]:
    """`p`, after checking that every mode of its discrete system decays:
    |lambda| >= 1 grows without bound, which no fixed-point state holds."""
    lam, _ = discretize(op, p)
    mag = np.abs(lam)
    if mag.size and mag.max() >= 1:
        k = int(np.argmax(mag))
        raise ExportError(f"{lab}: {how} gives mode {k} the eigenvalue |lambda| = {mag[k]:.6g} >= 1; the "
                          "recurrence grows without bound, so it cannot run as a stable state space")
    return p


class MIMOCore(nn.Module):
    """The canonical MIMO node on (batch, time, features) input, with the
    library layer's extra arguments refused unless they change nothing
    (`check(args, kwargs)` raises ExportError for one that does)."""

    def __init__(self, op: str, params: dict[str, np.ndarray], check=None) -> None:
        super().__init__()
        self.core, self.check = SSMCore(params, "BLH", op=op), check

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.check is not None:
            self.check(args, kwargs)
        return self.core(x)
