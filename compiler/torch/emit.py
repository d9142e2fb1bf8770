"""Canonical s4dc state space nodes inside a torch graph.

`emit(u, op, params)` puts one canonical node (docs/onnx_forms.md) into
whatever torch exporter is running `s4dc.torch.export`, and computes the same
function in float64 in eager mode (so an adapter's replacement can be checked
against the layer it replaces before anything is exported). `SSMCore` is
that node as a module, for channels-last or channels-first activations.

SISO (one diagonal state space per channel, S4D): `s4dc.S4D`,
`s4dc.S4DBilinear`, `s4dc.S4DDiscrete`; parameters (H, N), (H,).
MIMO (one shared diagonal state of P modes, S5, LRU): `s4dc.MIMO`,
`s4dc.MIMOBilinear` (dt, A (P,), B (P, H_in), C (H_out, P), D (H_out, H_in))
and `s4dc.MIMODiscrete` (lam (P,), B, C, D, bias (H_out,)); all read
y_t = 2 Re(C x_t) + D u_t (+ bias).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from s4dc.frontend.canonical import DISCRETE_INPUTS, DOMAIN, MIMO_DISCRETE_INPUTS, MIMO_INPUTS
from s4dc.frontend.canonical import INPUTS as CONTINUOUS_INPUTS
from s4dc.targets.float_exec import causal_conv as causal_conv_np

# op -> the parameter names after u, in the canonical node's input order
INPUTS: dict[str, tuple[str, ...]] = {
    "S4D": tuple(CONTINUOUS_INPUTS[1:]), "S4DBilinear": tuple(CONTINUOUS_INPUTS[1:]),
    "S4DDiscrete": tuple(DISCRETE_INPUTS[1:]),
    "MIMO": tuple(MIMO_INPUTS[1:]), "MIMOBilinear": tuple(MIMO_INPUTS[1:]),
    "MIMODiscrete": tuple(MIMO_DISCRETE_INPUTS[1:]),
}
MIMO = ("MIMO", "MIMOBilinear", "MIMODiscrete")
_SISO_RULE = {"MIMO": "S4D", "MIMOBilinear": "S4DBilinear", "MIMODiscrete": "S4DDiscrete"}
ACTIVE: list[str] = []  # the exporter running s4dc.torch.export's torch export, if any


def discretize(op: str, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(lam, Bbar) of a layer's complex float64 parameters: (H, N) each for
    the SISO ops; (P,), (P, H_in) for MIMO (each mode by the S4D rule)."""
    if op in MIMO:
        if op == "MIMODiscrete":
            return p["lam"], p["B"]
        lam, gain = discretize(_SISO_RULE[op], {"dt": p["dt"], "A": p["A"][:, None],
                                                "B": np.ones((p["A"].shape[0], 1), complex)})
        return lam[:, 0], gain[:, 0, None] * p["B"]
    if op == "S4DDiscrete":
        return p["lam"], p["B"]
    dtA = p["dt"][:, None] * p["A"]
    if op == "S4D":  # zero-order hold
        lam = np.exp(dtA)
        return lam, (lam - 1.0) / p["A"] * p["B"]
    return (1 + dtA / 2) / (1 - dtA / 2), p["dt"][:, None] / (1 - dtA / 2) * p["B"]  # bilinear


def reference(u: np.ndarray, op: str, p: dict[str, np.ndarray]) -> np.ndarray:
    """The node's output in float64 for u (batch, T, H): the causal
    convolution with K[l] = 2 Re sum_n C_n Bbar_n lam_n^l, plus D u (+ bias);
    for MIMO, x_t = lam x_{t-1} + Bbar u_t, y_t = 2 Re(C x_t) + D u_t (+ bias)."""
    T = u.shape[1]
    lam, bbar = discretize(op, p)
    if op in MIMO:  # the recurrence, vectorized over batch and modes
        x = np.zeros((u.shape[0], lam.shape[0]), complex)
        y = np.empty(u.shape[:2] + (p["C"].shape[0],))
        drive = u @ bbar.T
        for t in range(T):
            x = lam * x + drive[:, t]
            y[:, t] = 2.0 * (x @ p["C"].T).real
        return y + u @ p["D"].T + p.get("bias", 0.0)
    vand = lam[:, :, None] ** np.arange(T)
    k = 2.0 * np.einsum("hn,hnl->hl", p["C"] * bbar, vand).real
    return causal_conv_np(u, k) + u * p["D"] + p.get("bias", 0.0)


def _flat(op: str, p: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The node's float32 inputs after u: complex parameters as (re, im)."""
    out = []
    for name in INPUTS[op]:
        base, _, part = name.partition("_")
        v = np.asarray(p[base if part in ("re", "im") else name])
        out.append(v.real if part == "re" else v.imag if part == "im" else v.real)
    return [np.ascontiguousarray(v, np.float32) for v in out]


def _unflat(op: str, ts) -> dict[str, np.ndarray]:
    vals = {n: t.detach().cpu().double().numpy() for n, t in zip(INPUTS[op], ts)}
    p: dict[str, np.ndarray] = {}
    for name, v in vals.items():
        base, _, part = name.partition("_")
        if part == "re":
            p[base] = v + 1j * vals[f"{base}_im"]
        elif part != "im":
            p[name] = v
    return p


def _function(op: str) -> type[torch.autograd.Function]:
    """An autograd function whose TorchScript symbolic is the `op` node."""

    class Node(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u, *ts):  # noqa: D401
            y = reference(u.detach().cpu().double().numpy(), op, _unflat(op, ts))
            return torch.from_numpy(y).to(device=u.device, dtype=u.dtype)

        @staticmethod
        def symbolic(g, u, *ts):
            y = g.op(f"{DOMAIN}::{op}", u, *ts)
            t = u.type()
            if op in MIMO:  # H_out features, C's first axis
                h_out = ts[INPUTS[op].index("C_re")].type().sizes()[0]
                t = t.with_sizes(list(t.varyingSizes()[:2]) + [h_out])
            y.setType(t)
            return y

    Node.__name__ = f"{op}Node"
    return Node


_FUNCTIONS = {op: _function(op) for op in INPUTS}


def emit(u: torch.Tensor, op: str, params: dict[str, np.ndarray]) -> torch.Tensor:
    """The canonical `op` node on channels-last u (batch, T, H)."""
    ts = [torch.tensor(v) for v in _flat(op, params)]
    if ACTIVE and ACTIVE[-1] == "dynamo":  # torch.export: an ONNX node of our domain, as it stands
        shape = u.shape if op not in MIMO else (*u.shape[:2], params["C"].shape[0])
        return torch.onnx.ops.symbolic(f"{DOMAIN}::{op}", (u, *ts), {}, dtype=u.dtype, shape=shape, version=1)
    return _FUNCTIONS[op].apply(u, *ts)


class SSMCore(nn.Module):
    """One canonical node as a module; `layout_in`/`layout_out` are 'BHL'
    (channels first) or 'BLH'."""

    def __init__(self, params: dict[str, np.ndarray], layout_in: str = "BLH", layout_out: str | None = None,
                 op: str = "S4D") -> None:
        super().__init__()
        self.params, self.op = params, op
        self.layout_in, self.layout_out = layout_in, layout_out or layout_in

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u.transpose(1, 2) if self.layout_in == "BHL" else u
        y = emit(u, self.op, self.params)
        return y.transpose(1, 2) if self.layout_out == "BHL" else y
