"""The per-channel choice among candidate fits: within tol and tame (the
continuation does not swell), then fewest modes, then smallest error."""
from __future__ import annotations

import numpy as np
from s4dc.passes.kernel_fit.modes import _model

_RES_MAX = 1e6  # largest |residue| / ||k|| of a returned realization
_SWELL = 16.0  # a continuation peaking above this multiple of the window's peak is "swelling"


def _swell(poles: np.ndarray, residues: np.ndarray, L: int) -> float:
    """max |k_hat[l]| over l in [L, 4L) divided by max |k_hat[l]| over the window."""
    if poles.size == 0:
        return 0.0
    kh = _model(poles[None], residues[None], 4 * L)[0]
    inside = float(np.max(np.abs(kh[:L])))
    return float(np.max(np.abs(kh[L:]))) / max(inside, 1e-300)


class _Best:
    """Per-channel best candidate.

    Ranking: within tol and tame (the streamed continuation does not swell
    past _SWELL times the window's peak) beats within tol, which beats
    outside tol; then fewer modes; then smaller error.
    """

    def __init__(self, n: int, tol: float):
        self.tol = tol
        self.poles: list = [None] * n
        self.res: list = [None] * n
        self.err = np.full(n, np.inf)
        self.slots = np.full(n, 1 << 30)
        self.tame = np.zeros(n, bool)

    def _rank(self, err: float, tame: bool) -> int:
        return 2 if (err <= self.tol and tame) else (1 if err <= self.tol else 0)

    def offer(self, i: int, poles: np.ndarray, residues: np.ndarray, err: float, tame: bool = True) -> None:
        s = len(poles)
        if not np.isfinite(err):
            return
        rn, ro = self._rank(err, tame), self._rank(self.err[i], bool(self.tame[i]))
        if rn != ro:
            better = rn > ro
        elif rn > 0:
            better = s < self.slots[i] or (s == self.slots[i] and err < self.err[i])
        else:
            better = err < self.err[i]
        if better:
            self.poles[i], self.res[i], self.err[i], self.slots[i] = poles, residues, err, s
            self.tame[i] = tame

    def done(self, i: int) -> bool:
        return bool(self.err[i] <= self.tol and self.tame[i])
