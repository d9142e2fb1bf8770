"""Simulated annealing of a placement on traffic: moves and swaps to nearby
cores, fixed seed and move count (deterministic)."""
from __future__ import annotations

import math
import random

import numpy as np
from s4dc.passes.placement.problem import Problem

NEAR_RADIUS = 3      # annealing picks targets within this many hops


def anneal(prob: Problem, pos: np.ndarray, moves: int, seed: int,
           floor: float = -math.inf) -> tuple[np.ndarray, int]:
    """Swap/move annealing on traffic with a fixed seed and move count
    (geometric cooling in 64 steps); stops after a step that reaches
    `floor` (a lower bound on traffic: nothing better exists). Returns the
    best placement seen and the moves made."""
    n, M = prob.n, prob.M
    if n < 2 or moves <= 0:
        return pos.copy(), 0
    rnd = random.Random(seed)
    D = prob.D()
    nbrs = prob.nbrs
    near = _near(prob, NEAR_RADIUS)
    p_list = pos.tolist()
    occ = [-1] * M
    for p, c in enumerate(p_list):
        occ[c] = p
    cur = prob.traffic(pos)

    def delta(a: int, c: int) -> float:
        pa = p_list[a]
        b = occ[c]
        Da, Dc = D[pa], D[c]
        d = 0.0
        for q, w in nbrs[a]:
            if q != b:
                pq = p_list[q]
                d += w * (Dc[pq] - Da[pq])
        if b >= 0:
            for q, w in nbrs[b]:
                if q != a:
                    pq = p_list[q]
                    d += w * (Da[pq] - Dc[pq])
        return d

    # Initial temperature: from the uphill deltas of sampled moves.
    ups = []
    for _ in range(min(2000, moves)):
        a = rnd.randrange(n)
        c = near[p_list[a]][rnd.randrange(len(near[p_list[a]]))]
        d = delta(a, c)
        if d > 0:
            ups.append(d)
    if not ups:
        return pos.copy(), 0
    ups.sort()
    T0 = ups[len(ups) // 2] / math.log(2.0)   # median uphill move accepted with p = 1/2
    T1 = min(ups[0], 1.0) * 0.05              # at the end almost nothing uphill
    best, best_pos = cur, list(p_list)
    steps = 64
    per = max(1, moves // steps)
    exp, rand, randrange = math.exp, rnd.random, rnd.randrange
    done = 0
    for s in range(steps):
        T = T0 * (T1 / T0) ** (s / (steps - 1))
        m = per if s < steps - 1 else moves - done
        done += m
        for _ in range(m):
            a = randrange(n)
            nb = nbrs[a]
            if nb and rand() < 0.5:
                base = p_list[nb[randrange(len(nb))][0]]
            else:
                base = p_list[a]
            lst = near[base]
            c = lst[randrange(len(lst))]
            pa = p_list[a]
            if c == pa:
                continue
            d = delta(a, c)
            if d <= 0.0 or rand() < exp(-d / T):
                b = occ[c]
                p_list[a] = c
                occ[c] = a
                occ[pa] = b
                if b >= 0:
                    p_list[b] = pa
                cur += d
        if cur < best - 1e-9:
            best, best_pos = cur, list(p_list)
        if best <= floor + 1e-9:
            break
    out = np.array(best_pos, dtype=np.int64)
    final = np.array(p_list, dtype=np.int64)
    return (final if prob.traffic(final) <= prob.traffic(out) else out), done


def _near(prob: Problem, r: int) -> list[list[int]]:
    out = []
    X, Y = prob.X, prob.Y
    for c in range(prob.M):
        d = np.abs(X - X[c]) + np.abs(Y - Y[c])
        lst = np.nonzero((d <= r) & (d > 0))[0].tolist()
        out.append(lst)
    return out
