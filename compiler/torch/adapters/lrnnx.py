"""lrnnx 1.0.0.post1 (SAiDl's linear RNN library): its LTI diagonal layers
`S4D` (SISO), `S5`, `LRU` and the four Centaurus variants (MIMO).

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
discrete system under both rules. With channels > 1 the layer is MIMO with
structure (each channel's C reads the same H N modes; outputs (c h), or
(h c) with swap_channels), written by the canonical writer's mapping
(`state_spaces.channels_mimo`) as s4dc.MIMO / s4dc.MIMOBilinear.
Supported: no gate, no bottleneck, a global kernel (l_max None or at least the example length);
anything else is refused naming the module.

S5 (`models/lti/s5.py`, `core/discretization.py`, `core/convolution.py`):
`A` (P, 2) = (log_A_real, A_imag), `log_dt` (P,), `B` (P, H) real, `C`
(H, P, 2) complex as a real view, `D` (H, H); the rule is the function in
`discretize_fn` (zoh, bilinear, dirac, no_discretization):

    A = -softplus(log_A_real) + i A_imag,  dt = exp(log_dt) (one step per mode)
    zoh:      lam = exp(dt A),                  Bbar = (lam - 1) / A B    -> s4dc.MIMO
    dirac:    lam = exp(dt A),                  Bbar = B                  -> s4dc.MIMODiscrete
    bilinear: lam = (1 + dt A/2)^-1 (1 - dt A/2), Bbar = dt / (1 + dt A/2) B  (lrnnx's rule as written:
              |lam| > 1 for Re A < 0, refused as unstable)
    no_discretization: lam = A, Bbar = B (refused unless |A| < 1)
    forward: y = Re(C x) + x @ D   (no conjugate symmetry: C/2 here, D transposed)

LRU (`models/lti/lru.py`): `nu_log`, `theta_log`, `gamma_log` (P,), `B_re`,
`B_im` (P, H), `C_re`, `C_im` (H, P), `D` (H,):
lam = exp(-exp(nu_log) + i exp(theta_log)), Bbar = exp(gamma_log) B,
y = Re(C x) + D * x -> s4dc.MIMODiscrete.

Centaurus (`models/lti/centaurus.py`; `CentaurusNeck`, `CentaurusDWS`,
`CentaurusFull`, `CentaurusPWNeck`): `log_delta` (N,), `A` (N, M) complex;
its forward discretizes by lam = exp(delta A) whatever `discretization`
says, and reads out K[n, l] = sum_m Re(lam_nm^l) E_nm (the pointwise neck:
no E, each of the N M modes its own lane), then y = C_eff (K * B_eff u). Each
(n, m) is a mode driven by B_eff's row n, read by C_eff[:, n] E_nm / 2
(Re(z) = 2 Re(z / 2)) -> s4dc.MIMODiscrete; B_eff and C_eff (which the
variants build differently from B and C) are the layer's own
`_effective_B()`, `_effective_C()`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from s4dc.errors import ExportError
from s4dc.torch.adapters import register
from s4dc.torch.adapters.mimo import MIMOCore, c128, f64, label, real_view, stable
from s4dc.torch.adapters.state_spaces import channels_mimo
from s4dc.torch.emit import SSMCore

_TRANSFORMS = {
    "none": lambda p: p, "exp": np.exp, "relu": lambda p: np.maximum(p, 0.0) + 1e-4,
    "sigmoid": lambda p: 1.0 / (1.0 + np.exp(-p)), "softplus": lambda p: np.logaddexp(0.0, p),
}
_OPS = {"zoh": "S4D", "bilinear": "S4DBilinear"}


def _complex(t: torch.Tensor, is_real: bool) -> np.ndarray:
    v = f64(t)
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
    A = -f_re(f64(layer.A_real))
    if not is_real:
        A = A - 1j * _transform(lab, layer.imag_transform, "imag_transform")(f64(layer.A_imag))
    inv_dt = f64(layer.inv_dt)
    if layer.dt_fast:
        inv_dt = np.sinh(inv_dt)
    dt = _transform(lab, layer.dt_transform, "dt_transform")(inv_dt)
    rep = int(layer.repeat)
    A = np.tile(A, (rep, 1))
    B = np.tile(_complex(layer.B, is_real)[0], (rep, 1))
    C = _complex(layer.C, is_real)  # (channels, H, N)
    D = f64(layer.D)                 # (channels, H)
    if C.shape[0] == 1:
        C, D = C[0], D[0]
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
        _no_padding(self.lab, lengths, x.shape[1])
        y = self.output_linear(self.drop(self.mult_activation(self.conv_activation(self.core(x)))))
        return (y.transpose(1, 2) if self.transposed else y), None


def _no_padding(lab: str, lengths, T: int) -> None:
    if lengths is not None and not (isinstance(lengths, int) and lengths == T):
        raise ExportError(f"{lab}: called with lengths= (padding masks); a stream has no padding, "
                          "export the model without it")


@register("lrnnx.models.lti.s4d.S4D", library="lrnnx", layer="S4D")
def adapt(name: str, layer: nn.Module, args: tuple) -> nn.Module:
    lab = label(name, layer)
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
    if p["C"].ndim == 3:  # channels > 1
        op, p = {"S4D": "MIMO", "S4DBilinear": "MIMOBilinear"}[op], channels_mimo(p)
        if layer.layer.swap_channels:  # outputs (h c) instead of (c h)
            ch, H = layer.C.shape[0], p["B"].shape[1]
            rows = np.arange(ch * H).reshape(ch, H).T.reshape(-1)
            p = dict(p, C=p["C"][rows], D=p["D"][rows])
    return LrnnxS4D(lab, layer, op, p)


# --- MIMO: S5, LRU, Centaurus -------------------------------------------------------------
def _lti_core(op: str, p: dict[str, np.ndarray]) -> MIMOCore:
    """The layer's forward (x, integration_timesteps=None, lengths=None): lrnnx's
    S5, LRU and Centaurus read neither argument, so neither does this."""
    return MIMOCore(op, p)


def s5_params(lab: str, layer: nn.Module) -> tuple[str, dict[str, np.ndarray]]:
    """(canonical op, float64 parameters) of an lrnnx S5 layer."""
    log_re, im = f64(layer.A).T
    A = -np.logaddexp(0.0, log_re) + 1j * im
    dt = np.exp(f64(layer.log_dt))
    B = f64(layer.B).astype(complex)
    C, D = real_view(layer.C) / 2.0, f64(layer.D).T
    rule = getattr(layer.discretize_fn, "__name__", "?")
    bias = np.zeros(C.shape[0])
    if rule == "zoh":
        return "MIMO", stable(lab, "MIMO", {"dt": dt, "A": A, "B": B, "C": C, "D": D}, "its zoh rule")
    if rule == "dirac":
        p = {"lam": np.exp(dt * A), "B": B, "C": C, "D": D, "bias": bias}
    elif rule == "bilinear":  # lrnnx's formula, as its discretize computes it
        p = {"lam": (1 - dt * A / 2) / (1 + dt * A / 2), "B": (dt / (1 + dt * A / 2))[:, None] * B,
             "C": C, "D": D, "bias": bias}
    elif rule == "no_discretization":
        p = {"lam": A, "B": B, "C": C, "D": D, "bias": bias}
    else:
        raise ExportError(f"{lab}: discretization '{rule}' is not zoh, bilinear, dirac or no_discretization "
                          "(an LTI layer has no async time steps)")
    how = {"bilinear": "its bilinear rule (1 + dt A/2)^-1 (1 - dt A/2) with Re A < 0",
           "dirac": "its dirac rule", "no_discretization": "no_discretization (lambda = A)"}[rule]
    return "MIMODiscrete", stable(lab, "MIMODiscrete", p, how)


@register("lrnnx.models.lti.s5.S5", library="lrnnx", layer="S5")
def adapt_s5(name: str, layer: nn.Module, args: tuple) -> nn.Module:
    lab = label(name, layer)
    op, p = s5_params(lab, layer)
    return _lti_core(op, p)


def lru_params(lab: str, layer: nn.Module) -> dict[str, np.ndarray]:
    """MIMODiscrete parameters of an lrnnx LRU layer (gamma folded into B)."""
    lam = np.exp(-np.exp(f64(layer.nu_log)) + 1j * np.exp(f64(layer.theta_log)))
    B = (f64(layer.B_re) + 1j * f64(layer.B_im)) * np.exp(f64(layer.gamma_log))[:, None]
    C = (f64(layer.C_re) + 1j * f64(layer.C_im)) / 2.0
    p = {"lam": lam, "B": B, "C": C, "D": np.diag(f64(layer.D)), "bias": np.zeros(C.shape[0])}
    return stable(lab, "MIMODiscrete", p, "exp(-exp(nu_log) + i exp(theta_log))")


@register("lrnnx.models.lti.lru.LRU", library="lrnnx", layer="LRU")
def adapt_lru(name: str, layer: nn.Module, args: tuple) -> nn.Module:
    lab = label(name, layer)
    return _lti_core("MIMODiscrete", lru_params(lab, layer))


def centaurus_params(lab: str, layer: nn.Module) -> dict[str, np.ndarray]:
    """MIMODiscrete parameters of a Centaurus layer: mode (n, m) flattened n-major."""
    delta = np.exp(f64(layer.log_delta))
    lam = np.exp(delta[:, None] * c128(layer.A))  # (N, M)
    N, M = lam.shape
    with torch.no_grad():  # the variant's own projections (it builds them from B, C and delta)
        b_eff, c_eff = f64(layer._effective_B()), f64(layer._effective_C())
    if getattr(layer, "E", None) is None:  # the pointwise neck: every (n, m) its own lane
        B, C = b_eff, c_eff / 2.0
    else:
        E = f64(layer.E)
        B = np.repeat(b_eff, M, axis=0)
        C = (c_eff[:, :, None] * E[None] / 2.0).reshape(c_eff.shape[0], N * M)
    p = {"lam": lam.reshape(-1), "B": B.astype(complex), "C": C.astype(complex), "D": np.zeros((C.shape[0], B.shape[1])),
         "bias": np.zeros(C.shape[0])}
    return stable(lab, "MIMODiscrete", p, "exp(delta A)")


def _adapt_centaurus(name: str, layer: nn.Module, args: tuple) -> nn.Module:
    lab = label(name, layer)
    return _lti_core("MIMODiscrete", centaurus_params(lab, layer))


for _cls in ("CentaurusNeck", "CentaurusDWS", "CentaurusFull", "CentaurusPWNeck"):
    register(f"lrnnx.models.lti.centaurus.{_cls}", library="lrnnx", layer=_cls)(_adapt_centaurus)
