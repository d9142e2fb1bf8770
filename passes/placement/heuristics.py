"""Baseline placements: Lava's first-come order (naive) and the greedy
nearest-neighbour placement with its four variants."""
from __future__ import annotations

import math

import numpy as np
from s4dc.passes.placement.problem import Problem
from s4dc.targets.loihi2.hardware import PlacementError


def naive(prob: Problem) -> np.ndarray:
    """Lava's mapper: logical cores in first-come order."""
    return np.arange(prob.n, dtype=np.int64)


GREEDY_VARIANTS = (("corner", 0.0), ("corner", 0.5), ("centre", 0.0), ("centre", 0.5))


def greedy(prob: Problem, allowed: np.ndarray | None = None, start: str = "corner",
           crowd: float = 0.0) -> np.ndarray:
    """Parts in topological (id) order, each on the free core with the least
    traffic-weighted route cost to its placed neighbours (ties: lowest core),
    less `crowd` x its traffic x the share of the core's mesh neighbours
    still free (room for what follows). A part with no placed neighbour
    takes the first free core from `start` (the chip's corner or centre).
    `allowed[p]`: the only chip part p may use (or -1)."""
    n, M = prob.n, prob.M
    pos = np.full(n, -1, dtype=np.int64)
    free = np.ones(M, dtype=bool)
    adj = prob.adjacent()
    free_nb = np.array([len(a) for a in adj], dtype=np.float64)
    deg = np.maximum(free_nb, 1.0)
    if start == "centre":
        cx, cy = (prob.spec.mesh[0] - 1) / 2.0, (prob.spec.mesh[1] - 1) / 2.0
        pref = np.argsort(np.abs(prob.lx - cx) + np.abs(prob.ly - cy) + prob.chip * 1e6, kind="stable")
    else:
        pref = np.arange(M)
    for p in range(n):
        mask = free if allowed is None or allowed[p] < 0 else free & (prob.chip == allowed[p])
        if not mask.any():
            raise PlacementError(f"greedy placement: no free core for part {p}")
        placed = [(q, w) for q, w in prob.nbrs[p] if pos[q] >= 0]
        if placed:
            ws = np.array([w for _, w in placed])
            c = prob.cost_from(np.array([pos[q] for q, _ in placed]), ws)
            if crowd:
                c = c - crowd * float(ws.sum()) * free_nb / deg
            core = int(np.argmin(np.where(mask, c, np.inf)))
        else:
            core = int(pref[np.argmax(mask[pref])])
        pos[p] = core
        free[core] = False
        free_nb[adj[core]] -= 1
    return pos


def greedy_best(prob: Problem, allowed: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The best greedy variant (GREEDY_VARIANTS) by traffic; ties: the first."""
    best, name, val = None, "", math.inf
    for start, crowd in GREEDY_VARIANTS:
        pos = greedy(prob, allowed, start, crowd)
        v = prob.traffic(pos)
        if v < val - 1e-9:
            best, name, val = pos, f"{start} start, crowding {crowd}", v
    return best, name
