"""Chip-level split of a multi-chip placement: contiguous chunks of the part
order by dynamic programming, then a hinted CP-SAT model of the chip
assignment."""
from __future__ import annotations

import math

import numpy as np
from s4dc.passes.placement.problem import Problem, json_number, scale_of
from s4dc.targets.loihi2.hardware import HardwareSpec


def chip_split_dp(prob: Problem) -> np.ndarray:
    """Contiguous chunks of the part order (topological) on the chips in
    snake order over the chip grid, at most cores_per_chip parts each:
    least weight of edges crossing chunk boundaries, then (ties) the most
    even chunk sizes, exact by dynamic programming. Returns chip per part."""
    n, K, C = prob.n, prob.K, prob.spec.cores_per_chip
    order = _snake_chips(prob.spec, K)
    if K == 1:
        return np.zeros(n, dtype=np.int64)
    # cut[b]: weight of edges (a, c) with a < b <= c in part order
    scale = scale_of(prob.pw.tolist())
    diff = np.zeros(n + 2, dtype=np.int64)
    for (a, b), w in prob.sym.items():
        v = math.floor(w * scale + 1e-9)
        diff[a + 1] += v
        diff[b + 1] -= v
    cut = np.cumsum(diff)[: n + 1]
    big = np.int64(K * C * C + 1)      # cut first, then the sum of squared chunk sizes
    INF = np.iinfo(np.int64).max // 4
    f = np.full((K + 1, n + 1), INF, dtype=np.int64)
    arg = np.zeros((K + 1, n + 1), dtype=np.int64)
    f[0, 0] = 0
    for j in range(1, K + 1):
        for b in range(1, n + 1):
            lo = max(0, b - C)
            a = np.arange(lo, b)
            prev = f[j - 1, lo:b]
            v = np.where(prev >= INF, INF, prev + np.where(a > 0, cut[a], 0) * big + (b - a) ** 2)
            i = int(np.argmin(v))
            f[j, b], arg[j, b] = v[i], a[i]
    j = K  # all chips in use: with n > (K - 1) * C every chunk is needed anyway
    while f[j, n] >= INF and j > 1:
        j -= 1
    chip = np.zeros(n, dtype=np.int64)
    b = n
    while j > 0:
        a = int(arg[j, b])
        chip[a:b] = order[j - 1]
        b, j = a, j - 1
    return chip


def chip_split_cpsat(prob: Problem, hint: np.ndarray, seed: int, dtime: float) -> tuple[np.ndarray, dict]:
    """CP-SAT model of the chip assignment: a chip per part, at most
    cores_per_chip parts per chip (a few cores kept free on each chip when
    the parts allow it), minimizing messages x chip-grid distance, then the
    fullest chip. Hinted with `hint`, one worker, deterministic time limit;
    returns the hint if CP-SAT finds nothing better."""
    from ortools.sat.python import cp_model

    n, K, C = prob.n, prob.K, prob.spec.cores_per_chip
    scale = scale_of(prob.pw.tolist())
    m = cp_model.CpModel()
    x = [[m.new_bool_var(f"x{p}_{c}") for c in range(K)] for p in range(n)]
    gx = [int(prob.spec.chip_xy(c)[0]) for c in range(K)]
    gy = [int(prob.spec.chip_xy(c)[1]) for c in range(K)]
    gmax = max(max(gx), max(gy)) + 1
    load = []
    for c in range(K):
        v = m.new_int_var(0, C, f"load{c}")
        m.add(v == sum(x[p][c] for p in range(n)))
        load.append(v)
    for p in range(n):
        m.add_exactly_one(x[p])
    px = [m.new_int_var(0, gmax, f"px{p}") for p in range(n)]
    py = [m.new_int_var(0, gmax, f"py{p}") for p in range(n)]
    for p in range(n):
        m.add(px[p] == sum(gx[c] * x[p][c] for c in range(K)))
        m.add(py[p] == sum(gy[c] * x[p][c] for c in range(K)))
    terms = []
    for (a, b), w in prob.sym.items():
        iw = math.floor(w * scale + 1e-9)
        if iw <= 0:
            continue
        dx = m.new_int_var(0, gmax, "")
        dy = m.new_int_var(0, gmax, "")
        m.add_abs_equality(dx, px[a] - px[b])
        m.add_abs_equality(dy, py[a] - py[b])
        terms.append(iw * (dx + dy))
    fullest = m.new_int_var(0, C, "fullest")
    m.add_max_equality(fullest, load)
    m.minimize((C + 1) * sum(terms) + fullest)
    for p in range(n):
        for c in range(K):
            m.add_hint(x[p][c], int(hint[p]) == c)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.max_deterministic_time = dtime
    solver.parameters.log_search_progress = False
    st = solver.solve(m)
    info = {"status": solver.status_name(st), "deterministic_time": json_number(round(solver.deterministic_time, 3))}
    if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return hint, info
    out = np.array([next(c for c in range(K) if solver.value(x[p][c])) for p in range(n)], dtype=np.int64)
    return out, info


def _snake_chips(spec: HardwareSpec, K: int) -> list[int]:
    """The first K chips of the system (row-major ids) visited in a snake
    over the chip grid, so consecutive chips are neighbours."""
    cols = spec.grid[0]
    ids = list(range(K))
    rows: dict[int, list[int]] = {}
    for c in ids:
        rows.setdefault(c // cols, []).append(c)
    out = []
    for r in sorted(rows):
        out += rows[r] if r % 2 == 0 else rows[r][::-1]
    return out
