"""A fit's settings and one chunk's per-channel working data, handed to the
stages instead of long argument lists."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from s4dc.passes.kernel_fit.ranking import _Best


@dataclass(frozen=True)
class FitSettings:
    """What every stage of a fit is held to (kernels are normalized, so tol is relative)."""

    tol: float      # target relative L2 error per channel
    cap: int        # most folded modes per channel (max_modes, or n_modes)
    rho_max: float  # largest |pole| returned (max_radius < 1)


@dataclass
class ChunkState:
    """The working data of one chunk's fit, shared by its passes.

    Two indexings: chunk rows `ci` (kernels, `best`, `decayed`, `hints`) and
    positions `i` among the live rows (`live[i]` is a row; `ref_fit`,
    `unstable_fit` are per position).
    """

    k: np.ndarray            # (B, L) normalized kernels of the chunk
    cfg: FitSettings
    best: _Best              # the best candidate per row so far
    live: np.ndarray         # rows with a nonzero kernel
    decayed: np.ndarray      # (B,) bool: the kernel has decayed inside the window
    hints: list              # per row: lattice hint (theta_top, rho_top) or None
    # per live position: the reference unconstrained ESPRIT fit (ev, poles, residues, error)
    # and the latest unstable one, both None until an ESPRIT fit is made
    ref_fit: list = field(default_factory=list)
    unstable_fit: list = field(default_factory=list)
    cache: dict = field(default_factory=dict)   # the sketch's test matrices by (L, width)

    @property
    def L(self) -> int:
        return int(self.k.shape[1])
