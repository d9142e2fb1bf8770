"""The measured path: any module mapping (batch, time, features) to (batch,
time, features) that no adapter knows, realized from its measured impulse
response.

The module is probed on inputs of the example's length and width, in the
layout it was called with ('BLH', or 'BHL' where only axis 2 has the
example's length):

1. linear: a zero input gives zero, and f(a x1 + b x2) = a f(x1) + b f(x2)
   for random x1, x2 scaled like the layer's real input;
2. causal: an impulse at step T/2 leaves every earlier output at zero;
3. time-invariant: the response to that impulse is the response to an
   impulse at step 0, shifted;
4. the output on random inputs is the causal convolution with the measured
   impulse response h (T, H_out, H_in) (what 1-3 imply).

Each deviation is max |difference| / max |reference|; PROBE_TOL bounds all of
them (float32 modules reach about 1e-6). A module whose output channel i
answers no impulse in input channel j != i (within PROBE_TOL) is SISO: each
channel's kernel h[:, i, i] is fitted with the compiler's stable kernel fit
(`s4dc.passes.kernel_fit`, FIT_TOL per channel) and the module is replaced by
one `s4dc.S4DDiscrete` node (poles lam, B = 1, C = residues). A
channel-coupled one (or one with other output features than input ones) is
MIMO: the whole (H_out, H_in, T) response is realized by block-Hankel
identification (`s4dc.passes.kernel_fit.block_hankel`, FIT_TOL on the whole
kernel) and the module becomes one `s4dc.MIMODiscrete` node (one shared
state). Past the example length the node continues the fitted, stable
response; what the module does there is not measured.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from s4dc.errors import ExportError
from s4dc.targets.float_exec import full_causal_conv
from s4dc.torch.emit import SSMCore

PROBE_TOL = 1e-4
FIT_TOL = 1e-5
MAX_MODES = 64


def label(name: str, m: nn.Module) -> str:
    return f"module '{name or '<root>'}' ({type(m).__name__})"


def layout_of(x: torch.Tensor, T: int) -> str | None:
    """'BLH' or 'BHL' for a 3-D activation of a model run at length T (None: neither)."""
    if x.dim() != 3:
        return None
    if x.shape[1] == T:
        return "BLH"
    return "BHL" if x.shape[2] == T else None


def _first(out):
    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    return out


class _Probe:
    """Calls the module on channels-last float64 numpy arrays (batch, T, H)."""

    def __init__(self, module: nn.Module, args: tuple, layout: str) -> None:
        self.m, self.rest, self.layout = module, args[1:], layout
        self.dtype, self.device = args[0].dtype, args[0].device

    def __call__(self, u: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(u).to(self.dtype).to(self.device)
        x = x.transpose(1, 2).contiguous() if self.layout == "BHL" else x
        with torch.no_grad():
            y = _first(self.m(x, *self.rest))
        if not isinstance(y, torch.Tensor) or y.dim() != 3:
            raise ValueError("not one 3-D tensor")
        y = y.transpose(1, 2) if self.layout == "BHL" else y
        return y.detach().cpu().double().numpy()


def _dev(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.abs(b).max()), float(np.abs(a).max()), 1e-30)
    return float(np.abs(a - b).max()) / scale


def coupled(h: np.ndarray) -> bool:
    """Whether the response h (T, H_out, H_in) is MIMO: other output features
    than input ones, or an output channel answering another channel's
    impulse beyond PROBE_TOL of the largest response."""
    if h.shape[1] != h.shape[2]:
        return True
    off = h.copy()
    off[:, np.arange(h.shape[1]), np.arange(h.shape[1])] = 0.0
    return float(np.abs(off).max(initial=0.0)) > PROBE_TOL * max(float(np.abs(h).max(initial=0.0)), 1e-30)


def measure(name: str, module: nn.Module, args: tuple, T: int) -> np.ndarray:
    """The impulse response h (T, H_out, H_in) of an LTI causal module, or an
    ExportError naming the module and the property it breaks, with the deviation."""
    lab = label(name, module)
    x = args[0]
    layout = layout_of(x, T)
    if layout is None or not x.is_floating_point():
        raise ExportError(f"{lab}: takes a {tuple(x.shape)} {x.dtype} input; the measured path needs "
                          f"(batch, time={T}, features) floats")
    f = _Probe(module, args, layout)
    H = int(x.shape[2 if layout == "BLH" else 1])
    rng = np.random.default_rng(0)
    sd = float(x.detach().double().std()) or 1.0
    r1, r2 = (sd * rng.standard_normal((3, T, H)) for _ in range(2))
    try:
        y0, y1, y2, y12 = f(np.zeros((1, T, H))), f(r1), f(r2), f(r1 - 0.5 * r2)
        imp0, imp_mid = np.zeros((H, T, H)), np.zeros((H, T, H))
        t0 = T // 2
        imp0[np.arange(H), 0, np.arange(H)] = sd
        imp_mid[np.arange(H), t0, np.arange(H)] = sd
        g0, g_mid = f(imp0) / sd, f(imp_mid) / sd
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - the module's own failure on a probe
        raise ExportError(f"{lab}: fails on a probe input of shape {(3, T, H)} "
                          f"({clean(e)})") from None
    if y1.shape[:2] != (3, T):
        raise ExportError(f"{lab}: maps (batch, {T}, {H}) to {y1.shape[1:]} (batch first, {layout}); the "
                          "measured path needs the same time length in and out")
    if (d := float(np.abs(y0).max()) / max(float(np.abs(y1).max()), 1e-30)) > PROBE_TOL:
        raise ExportError(f"{lab}: not linear: a zero input gives an output {d:.2e} times the size of a "
                          f"random input's (a bias or offset; tolerance {PROBE_TOL:g})")
    if (d := _dev(y12, y1 - 0.5 * y2)) > PROBE_TOL:
        raise ExportError(f"{lab}: not linear: f(x1 - x2/2) differs from f(x1) - f(x2)/2 by {d:.2e} "
                          f"(relative; tolerance {PROBE_TOL:g}); an input-dependent (selective) SSM such "
                          "as Mamba is not a linear time-invariant layer and cannot run as S4D on Loihi 2")
    if (d := float(np.abs(g_mid[:, :t0]).max()) / max(float(np.abs(g_mid).max()), 1e-30)) > PROBE_TOL:
        raise ExportError(f"{lab}: not causal: an impulse at step {t0} changes the outputs before it "
                          f"({d:.2e} relative; tolerance {PROBE_TOL:g}); a bidirectional layer cannot "
                          "stream on Loihi 2")
    if (d := _dev(g_mid[:, t0:], g0[:, :T - t0])) > PROBE_TOL:
        raise ExportError(f"{lab}: not time-invariant: the response to an impulse at step {t0} differs from "
                          f"the shifted response to one at step 0 by {d:.2e} (relative; tolerance "
                          f"{PROBE_TOL:g})")
    h = g0.transpose(1, 2, 0)  # (T, out, in)
    if (d := _dev(full_causal_conv(r1, h.transpose(1, 2, 0)), y1)) > PROBE_TOL:
        raise ExportError(f"{lab}: not linear time-invariant: its output on random inputs differs from the "
                          f"convolution with its impulse response by {d:.2e} (relative; tolerance "
                          f"{PROBE_TOL:g})")
    return h


def clean(e: BaseException) -> str:
    from s4dc.torch.errors import cause_text
    return cause_text(e)


def realize(name: str, module: nn.Module, args: tuple, T: int, *, fit_tol: float = FIT_TOL,
            max_modes: int = MAX_MODES) -> tuple[nn.Module, dict]:
    """The replacement of a measured module (one S4DDiscrete node, or one
    MIMODiscrete node for a coupled response), and a report: modes (folded,
    per channel or shared), the fit error (the worst channel's, or the whole
    kernel's)."""
    from s4dc.passes.kernel_fit import fit_kernels

    lab = label(name, module)
    h = measure(name, module, args, T)
    layout = layout_of(args[0], T) or "BLH"
    if coupled(h):
        return _realize_mimo(lab, module, args, h, layout, fit_tol, max_modes)
    H = h.shape[1]
    k = np.ascontiguousarray(h[:, np.arange(H), np.arange(H)].T)  # (H, T)
    fit = fit_kernels(k, tol=fit_tol, max_modes=max_modes)
    worst = int(np.argmax(fit.rel_error)) if H else 0
    err = float(fit.rel_error[worst]) if H else 0.0
    if err > fit_tol:
        raise ExportError(f"{lab}: no stable realization with at most {max_modes} modes fits its measured "
                          f"impulse response to {fit_tol:g} (channel {worst}: relative error {err:.3g})")
    p = {"lam": fit.poles, "B": np.ones(fit.poles.shape, complex), "C": fit.residues,
         "D": np.zeros(H), "bias": np.zeros(H)}
    core = SSMCore(p, layout, op="S4DDiscrete")
    return _Like(lab, core, module, args), {"modes": fit.n_modes, "fit_error": err}


def _realize_mimo(lab: str, module: nn.Module, args: tuple, h: np.ndarray, layout: str, fit_tol: float,
                  max_modes: int) -> tuple[nn.Module, dict]:
    """A coupled response h (T, H_out, H_in) as one MIMODiscrete node: the
    fewest stable shared modes whose kernel is within fit_tol of h."""
    from s4dc.passes.kernel_fit.block_hankel import delay_reason, fit_mimo_kernel

    k = np.ascontiguousarray(h.transpose(1, 2, 0))  # (H_out, H_in, T), tap 0 first
    fit = fit_mimo_kernel(k, fit_tol, max_modes)
    if fit.rel_error > fit_tol:
        why = delay_reason(fit)
        raise ExportError(f"{lab}: no stable MIMO realization with at most {max_modes} modes fits its measured "
                          f"{k.shape[0]}x{k.shape[1]} impulse response to {fit_tol:g} (relative error "
                          f"{fit.rel_error:.3g} with {fit.lam.size} modes)" + (f"; {why}" if why else ""))
    p = {"lam": fit.lam, "B": fit.B, "C": fit.C, "D": fit.D, "bias": np.zeros(k.shape[0])}
    core = SSMCore(p, layout, op="MIMODiscrete")
    return _Like(lab, core, module, args), {"modes": int(fit.lam.size), "fit_error": fit.rel_error, "mimo": True}


class _Like(nn.Module):
    """The core, returning what the module returned: a tensor, or a tuple whose
    first item is the output and whose other items were None."""

    def __init__(self, lab: str, core: nn.Module, module: nn.Module, args: tuple) -> None:
        super().__init__()
        self.core = core
        with torch.no_grad():
            out = module(*args)
        self.tuple_len = len(out) if isinstance(out, tuple) else 0
        if self.tuple_len and any(o is not None for o in out[1:]):
            raise ExportError(f"{lab}: returns {self.tuple_len} values; the measured path "
                              "replaces modules that return one tensor, or (tensor, None, ...)")

    def forward(self, x: torch.Tensor, *args, **kwargs):
        y = self.core(x)
        return (y,) + (None,) * (self.tuple_len - 1) if self.tuple_len else y
