"""Kernel-fit benchmark: recover stable diagonal SSMs from stock S4D kernels.

Fits `--layers` layers of `--h` channels, each a stock S4D-Lin kernel
(Gu et al. 2022, ZOH, N/2 complex modes, dt log-uniform in [1e-3, 1e-1],
float32 as in ONNX files), with `s4dc.passes.kernel_fit.fit_kernels`, and
prints the seconds per layer and in total, the number of modes M, the largest
relative kernel error, the largest |pole|, and how many channels miss `--tol`.

    .venv/bin/python benchmarks/kernel_fit_bench.py [--layers 6 --h 256 --n 64 --l 1024 --jobs 2]

Goal: 6 x 256 kernels (N=64, L=1024) to 1e-5 in well under 10 s on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # before numpy: batched small LAPACK calls
os.environ.setdefault("OMP_NUM_THREADS", "1")        # run much slower with several BLAS threads

import numpy as np  # noqa: E402

from s4dc.passes.kernel_fit import fit_kernels  # noqa: E402


def stock_kernels(rng: np.random.Generator, H: int, N: int, L: int) -> np.ndarray:
    """S4D-Lin kernels, ZOH, B = 1, C complex normal; float32 (H, L)."""
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), H))[:, None]
    A = -0.5 + 1j * np.pi * np.arange(N // 2)[None]
    C = (rng.standard_normal((H, N // 2)) + 1j * rng.standard_normal((H, N // 2))) * 0.5 ** 0.5
    dtA = dt * A
    coef = C * (np.exp(dtA) - 1) / A
    k = 2 * (coef[:, :, None] * np.exp(dtA[:, :, None] * np.arange(L))).sum(1).real
    return k.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--h", type=int, default=256, help="channels per layer")
    ap.add_argument("--n", type=int, default=64, help="S4D state size N (N/2 complex modes)")
    ap.add_argument("--l", type=int, default=1024, help="kernel length L")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--max-modes", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (n_jobs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    layers = [stock_kernels(rng, args.h, args.n, args.l) for _ in range(args.layers)]
    times, errs, radii, modes, fails = [], [], [], [], 0
    c0 = os.times()
    t_all = time.perf_counter()
    for i, k in enumerate(layers):
        t0 = time.perf_counter()
        fit = fit_kernels(k, tol=args.tol, max_modes=args.max_modes, n_jobs=args.jobs)
        dt = time.perf_counter() - t0
        times.append(dt)
        errs.append(float(fit.rel_error.max()))
        radii.append(float(np.abs(fit.poles).max()))
        modes.append(fit.n_modes)
        fails += int((fit.rel_error > args.tol).sum())
        print(f"layer {i}: {dt:6.2f} s  M={fit.n_modes:3d}  max rel_error={errs[-1]:.2e}  max|pole|={radii[-1]:.9f}")
    total = time.perf_counter() - t_all
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user) \
        + (c1.children_system - c0.children_system)
    n = args.layers * args.h
    print(f"total: {total:.2f} s for {n} kernels ({args.layers} x {args.h}, N={args.n}, L={args.l}, "
          f"jobs={args.jobs}); per layer {total / args.layers:.2f} s; CPU {cpu:.2f} s (this process and workers)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} cores")
    print(f"max rel_error {max(errs):.2e} (tol {args.tol:g}), channels above tol: {fails}, "
          f"max |pole| {max(radii):.9f}, modes per layer {modes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
