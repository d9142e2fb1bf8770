"""lrnnx 1.0.0.post1 `lrnnx.models.lti.s4d.S4D` (SAiDl's linear RNN library).

Read from its source (`lrnnx/models/lti/s4d.py`, `ops/s4_utils.py`,
`ops/s4_kernel_interface.py`), never imported: lrnnx imports its CUDA and
triton extensions when the package is imported.

Parameters, registered on the S4D module itself (`register_ssm_params`,
diag=True): `inv_dt` (H, 1) (dt_tie) or (H, N); `A_real`, `A_imag`
(n_ssm, N); `B` (1, n_ssm, N, 2) and `C` (channels, H, N, 2), complex as real
views; `D` (channels, H). With the layer's transforms
(`param_transform`: none, exp, relu, sigmoid, softplus; `dt_fast`: sinh):

    A  = -f_real(A_real) - i f_imag(A_imag), repeated H / n_ssm times over channels
    dt = f_dt(inv_dt)
    K[l] = 2 Re sum_n C_n B_n (exp(dt A_n) - 1) / A_n exp(dt A_n l)         (disc="zoh")
    K[l] = 2 Re sum_n C_n B_n dt / (1 - dt A_n/2) ((1 + dt A_n/2) / (1 - dt A_n/2))^l   ("bilinear")
    forward: y = causal_conv(x, K) + D x, then conv_activation, mult_activation, dropout, output_linear

which is the canonical s4dc.S4D / s4dc.S4DBilinear node with its own B. An
untied dt (one per mode) is written with dt = 1, A = dt A, B = dt B, the same
discrete system under both rules. Supported: channels = 1, no gate, no
bottleneck, a global kernel (l_max None or at least the example length);
anything else is refused naming the module.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from s4dc.errors import ExportError
from s4dc.torch.adapters import register
from s4dc.torch.emit import SSMCore

_TRANSFORMS = {
    "none": lambda p: p, "exp": np.exp, "relu": lambda p: np.maximum(p, 0.0) + 1e-4,
    "sigmoid": lambda p: 1.0 / (1.0 + np.exp(-p)), "softplus": lambda p: np.logaddexp(0.0, p),
}
_OPS = {"zoh": "S4D", "bilinear": "S4DBilinear"}


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _complex(t: torch.Tensor, is_real: bool) -> np.ndarray:
    v = _f64(t)
    return v.astype(complex) if is_real else v[..., 0] + 1j * v[..., 1]


def _transform(lab: str, kind: str, what: str):
    if kind not in _TRANSFORMS:
        raise ExportError(f"{lab}: {what} '{kind}' is not one of lrnnx's transforms "
                          f"({', '.join(_TRANSFORMS)})")
    return _TRANSFORMS[kind]


def params(lab: str, layer: nn.Module) -> tuple[str, dict[str, np.ndarray]]:
    """(canonical op, continuous float64 parameters) of an lrnnx S4D layer."""
    disc = getattr(layer, "disc", "zoh")
    if disc not in _OPS:
        raise ExportError(f"{lab}: discretization '{disc}' is not zoh or bilinear")
    is_real = bool(layer.is_real)
    f_re = _transform(lab, layer.real_transform, "real_transform")
    A = -f_re(_f64(layer.A_real))
    if not is_real:
        A = A - 1j * _transform(lab, layer.imag_transform, "imag_transform")(_f64(layer.A_imag))
    inv_dt = _f64(layer.inv_dt)
    if layer.dt_fast:
        inv_dt = np.sinh(inv_dt)
    dt = _transform(lab, layer.dt_transform, "dt_transform")(inv_dt)
    rep = int(layer.repeat)
    A = np.tile(A, (rep, 1))
    B = np.tile(_complex(layer.B, is_real)[0], (rep, 1))
    C = _complex(layer.C, is_real)[0]
    D = _f64(layer.D)[0]
    if dt.shape[1] == 1:  # dt_tie: one step per channel
        return _OPS[disc], {"dt": dt[:, 0].copy(), "A": A, "B": B, "C": C, "D": D}
    return _OPS[disc], {"dt": np.ones(dt.shape[0]), "A": dt * A, "B": dt * B, "C": C, "D": D}


class LrnnxS4D(nn.Module):
    """lrnnx S4D's forward with its convolution and D term as one canonical node;
    the layer's own activation, dropout and output modules after it."""

    def __init__(self, lab: str, layer: nn.Module, op: str, p: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.lab, self.core = lab, SSMCore(p, "BLH", op=op)
        self.transposed = bool(layer.transposed)
        self.conv_activation, self.mult_activation = layer.conv_activation, layer.mult_activation
        self.drop, self.output_linear = layer.drop, layer.output_linear

    def forward(self, x: torch.Tensor, lengths=None, **kwargs):
        x = x.transpose(1, 2) if self.transposed else x
        if lengths is not None and not (isinstance(lengths, int) and lengths == x.shape[1]):
            raise ExportError(f"{self.lab}: called with lengths= (padding masks); a stream has no padding, "
                              "export the model without it")
        y = self.output_linear(self.drop(self.mult_activation(self.conv_activation(self.core(x)))))
        return (y.transpose(1, 2) if self.transposed else y), None


@register("lrnnx.models.lti.s4d.S4D", library="lrnnx", layer="S4D")
def adapt(name: str, layer: nn.Module, args: tuple) -> nn.Module:
    lab = f"module '{name or '<root>'}' ({type(layer).__name__})"
    if int(layer.channels) != 1:
        raise ExportError(f"{lab}: channels={layer.channels} maps each input channel to {layer.channels} "
                          "outputs (a MIMO layer), which needs s4dc's MIMO support (issue 13)")
    for attr, what in (("gate", "a multiplicative gate"), ("bottleneck", "a bottleneck")):
        if getattr(layer, attr, None) is not None:
            raise ExportError(f"{lab}: {attr}={getattr(layer, attr)} adds {what}, which the adapter does not "
                              "map (Loihi 2 runs ReLU networks without gates)")
    T = args[0].shape[2 if layer.transposed else 1]
    l_max = getattr(layer.layer, "L", None)
    if l_max is not None and l_max < T:
        raise ExportError(f"{lab}: l_max={l_max} truncates the kernel below the example length {T}; "
                          "a state space has no truncation (use l_max=None)")
    op, p = params(lab, layer)
    return LrnnxS4D(lab, layer, op, p)
