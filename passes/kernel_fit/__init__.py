"""Kernel fit: recover a stable diagonal state space from convolution kernels.

Each channel h of a depthwise causal convolution has a kernel k[h, l],
l = 0 .. L-1 (l = 0 is the zero-delay tap). `fit_kernels` finds poles p and
residues r such that

    k_hat[h, l] = 2 * Re( sum_m r[h, m] * p[h, m] ** l )

matches k[h] to a relative L2 error `tol` with every |p| <= max_radius < 1,
using the smallest number of modes M (one per conjugate pair, real poles
count as one) that meets `tol` for every channel of the layer.

Stability is part of the fit, not a clean-up afterwards. A kernel that has
not decayed inside the window cannot be identified uniquely from it, and an
unconstrained fit then places real energy in modes with |p| > 1: they
reproduce the window but grow without bound when the recurrence streams past
L, which is how Loihi 2 runs it. Every candidate whose poles leave the disk is
rejected; the reported error is always that of the returned, stable
realization, recomputed from its poles and residues.

Algorithm, per channel (batched over channels with numpy, one BLAS thread):

1. Subspace: the Hankel matrix of the kernel (about L/2 x L/2) is sketched
   with a fixed-seed Gaussian test matrix (products with the Hankel matrix
   are correlations, done by FFT); its left singular vectors and singular
   values give the signal subspace and the starting model order.
2. ESPRIT (matrix pencil): for a model order n the poles are the eigenvalues
   of the least-squares shift operator of the top-n subspace, the residues a
   least-squares fit of the kernel. A fit counts only if every pole is
   stable. Channels not fitted at the singular-value order get a sharper
   subspace (one power iteration: the summed noise of the sketch otherwise
   blurs the weak directions of clustered modes) and an order search.
3. Stable candidates for the channels whose ESPRIT fits stay unstable (the
   kernels that have not decayed inside the window; for stock S4D, dt * L
   below about 4):
   a. lattice: rho * exp(i j delta), j = 0 .. J-1, the structure of S4D-Lin
      (uniform frequencies, common radius). The highest-frequency pole of
      the unconstrained fit sits at the edge of the mode cluster, where
      ESPRIT stays accurate, so theta_top = (J-1) delta pins delta for each
      J; the sizes are scanned upward and Gauss-Newton (variable projection,
      rho <= max_radius) polishes (delta, rho). When the lattice is finer
      than the window resolves, it fits like a Fourier extension.
   b. damped Fourier-extension grids over the kernel's band, the ESPRIT poles
      reflected into the disk and clamped, for short kernels an exact stable
      interpolation (rho * DFT frequencies), and as a last resort `cap` modes
      spread over the band.
   Residues of these (often ill-conditioned) sets minimize the window error
   plus a penalty on the realization's energy past the window, with the
   largest penalty keeping the error within tol/2: plain least squares would
   return large residues that cancel in the window and not beyond it.
4. Choice per channel: within tol and "tame" (the realized kernel over
   [L, 4L) peaks below 16x its peak inside the window), then fewest modes,
   then smallest error. Residues above 1e6 x ||k|| (FIR-like kernels imitated
   by near-zero poles) are cut back by truncated SVD, error reported as is.
5. M = the largest per-channel mode count (or n_modes). A channel whose
   kernel has not decayed and that used fewer than M modes is refitted with
   the M-mode lattice when that fits within tol/2, tamely and better: for an
   S4D-Lin layer this recovers the original modes (and so the original
   continuation past the window) of kernels the window cannot resolve.
   Channels still needing fewer modes are padded with pole 0 and residue 0.
   rel_error is recomputed from the returned poles and residues.

Beyond the window, a kernel that has not decayed is not determined by the
data: the realization's continuation is stable, and of the kernel's scale
(at most _SWELL x its peak), but need not be the original system's.

Deterministic: the sketch uses a fixed seed, channels are processed in fixed
chunks of 32 whose results depend on their own data only, so results are
bit-identical across calls and across `n_jobs`.

The stages live in one module each: modes (pole sets and their kernels),
lstsq (residues for a pole set), subspace (Hankel subspace and ESPRIT),
lattice (the S4D-Lin lattice), grids (fallback pole grids), ranking (the
per-channel choice), state (a fit's settings and a chunk's working data),
chunk (the passes over one chunk of channels), fit (the driver).
"""
from s4dc.passes.kernel_fit.fit import KernelFit, fit_kernels

__all__ = ["KernelFit", "fit_kernels"]
