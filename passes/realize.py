"""Realize: turn causal depthwise convolutions into diagonal state spaces,
and full (MIMO) causal convolutions into MIMO diagonal state spaces
(block-Hankel realization, `kernel_fit.block_hankel`).

Each channel's kernel is fitted by a stable sum of damped complex modes
(`kernel_fit`); the layer becomes a folded, discrete, diagonal ssm with
B = 1 and C = the residues. The number of modes is the smallest that meets
the tolerance for every channel of the layer, up to `max_modes`.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from s4dc.errors import KernelFitError
from s4dc.ir.graph import Graph
from s4dc.passes.base import PassContext, register
from s4dc.ir.ops import CONV
from s4dc.ir.ops_mimo import MCONV


@register("realize")
def apply(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    tol = float(ctx.options.fit_tol)
    max_modes = int(ctx.options.max_modes)
    jobs = int(ctx.options.jobs) or min(2, os.cpu_count() or 1)
    g = graph.copy()
    report: dict[str, Any] = {}
    for l in g.layers:
        if l.is_(MCONV):
            report[l.name] = _realize_mimo(l, tol, max_modes)
            continue
        if not l.is_(CONV):
            continue
        from s4dc.passes.kernel_fit import fit_kernels  # only graphs with convolutions need it

        kernel = l.params["kernel"]
        fit = fit_kernels(kernel, tol=tol, max_modes=max_modes, n_jobs=jobs)
        worst = int(np.argmax(fit.rel_error)) if fit.rel_error.size else 0
        err = float(fit.rel_error[worst]) if fit.rel_error.size else 0.0
        if err > tol:
            raise KernelFitError(
                f"{l.where()}: no stable realization with at most {max_modes} modes fits the kernel "
                f"to tolerance {tol:g} (channel {worst}: relative error {err:.3g}); "
                "raise --max-modes or --fit-tol")
        h, m = fit.poles.shape
        l.op = "ssm"
        l.params = {"A": fit.poles.astype(complex), "B": np.ones((h, m), complex),
                    "C": fit.residues.astype(complex), "D": l.params["D"], "bias": l.params["bias"]}
        l.attrs = {"form": "diagonal", "time": "discrete", "folded": True}
        report[l.name] = {"modes": m, "kernel_taps": int(kernel.shape[1]),
                          "max_rel_error": float(f"{err:.3e}"),
                          "max_abs_pole": float(f"{np.abs(fit.poles).max() if m else 0.0:.9f}")}
    return g, ({"realized": report} if report else {})


def _realize_mimo(l, tol: float, max_modes: int) -> dict[str, Any]:
    """A full causal convolution (mconv) as a stable mimo layer, in place."""
    from s4dc.passes.kernel_fit.block_hankel import delay_reason, fit_mimo_kernel

    kernel = l.params["kernel"]
    fit = fit_mimo_kernel(kernel, tol, max_modes)
    modes = int(fit.lam.size)  # folded: one per conjugate pair
    if fit.rel_error > tol:
        raise KernelFitError(
            f"{l.where()}: no stable MIMO realization with at most {max_modes} modes fits the "
            f"{kernel.shape[0]}x{kernel.shape[1]} kernel to tolerance {tol:g} (relative error "
            f"{fit.rel_error:.3g} with {modes} modes); " + (delay_reason(fit) or "raise --max-modes or --fit-tol"))
    l.op = "mimo"
    l.params = {"A": fit.lam, "B": fit.B, "C": fit.C, "D": fit.D, "bias": l.params["bias"]}
    l.attrs = {"form": "diagonal", "time": "discrete", "folded": True}
    return {"modes": modes, "kernel_taps": int(kernel.shape[2]), "max_rel_error": float(f"{fit.rel_error:.3e}"),
            "max_abs_pole": float(f"{np.abs(fit.lam).max() if fit.lam.size else 0.0:.9f}")}
