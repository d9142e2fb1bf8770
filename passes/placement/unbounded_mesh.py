"""Exact least costs on the unbounded mesh, the building blocks of the lower
bound: a star, leaves around fixed hubs (min-cost flow), two hubs and their
leaves."""
from __future__ import annotations

import math

import numpy as np
from s4dc.targets.loihi2.hardware import PlacementError


def _dist_profile(k: int) -> list[int]:
    """The k smallest distances from a cell to k other distinct cells of the
    unbounded mesh: 4r cells at distance r."""
    out, r = [], 1
    while len(out) < k:
        out += [r] * min(4 * r, k - len(out))
        r += 1
    return out


def star_cost(weights: list[float]) -> float:
    """Exact least cost of a part linked to parts of these weights (a star)."""
    ws = sorted(weights, reverse=True)
    return float(sum(w * d for w, d in zip(ws, _dist_profile(len(ws)))))


def exact_cost(hubs: list[tuple[int, int]], classes: list[tuple[tuple[float, ...], int]], scale: float) -> float:
    """Exact least cost of placing leaves on distinct cells of the unbounded
    mesh, not on the hubs (fixed, distinct): class c has `count` leaves, each
    costing sum_j w[j] * d(cell, hub j). Each class only needs its N cheapest
    cells (N = all leaves), so a box around the hubs wide enough to hold them
    is exact; with several classes it is a transportation problem (min-cost
    flow)."""
    N = sum(c for _, c in classes)
    if N == 0:
        return 0.0
    hx = np.array([h[0] for h in hubs])
    hy = np.array([h[1] for h in hubs])
    spread = int(np.ptp(hx) + np.ptp(hy)) if len(hubs) > 1 else 0
    # N + len(hubs) cells lie within distance r of any hub, at most r + spread
    # from every hub; a cell outside the box below is farther than that from
    # every hub, so it is never among a class's N cheapest (weights >= 0).
    r = 0
    while 2 * r * r + 2 * r + 1 < N + len(hubs):
        r += 1
    E = r + spread + 1
    xs = np.arange(int(hx.min()) - E, int(hx.max()) + E + 1)
    ys = np.arange(int(hy.min()) - E, int(hy.max()) + E + 1)
    cx = np.repeat(xs, len(ys))
    cy = np.tile(ys, len(xs))
    D = np.abs(cx[None, :] - hx[:, None]) + np.abs(cy[None, :] - hy[:, None])
    keep = (D > 0).all(axis=0)
    D = D[:, keep]
    F = [np.floor(np.asarray(w, dtype=np.float64) @ D * scale + 1e-9) for w, _ in classes]
    if len(classes) == 1:
        return float(np.sort(np.partition(F[0], N - 1)[:N]).sum()) / scale
    from ortools.graph.python import min_cost_flow

    f = min_cost_flow.SimpleMinCostFlow()
    nc = len(classes)
    cand = [np.argpartition(Fc, N - 1)[:N] for Fc in F]
    cells = np.unique(np.concatenate(cand))
    cell_node = {int(c): 1 + nc + i for i, c in enumerate(cells.tolist())}
    sink = 1 + nc + len(cells)
    tails, heads, caps, costs = [], [], [], []
    for ci, (_, cnt) in enumerate(classes):
        tails.append(0), heads.append(1 + ci), caps.append(cnt), costs.append(0)
        for c in cand[ci].tolist():
            tails.append(1 + ci), heads.append(cell_node[c]), caps.append(1), costs.append(int(F[ci][c]))
    for c, node in cell_node.items():
        tails.append(node), heads.append(sink), caps.append(1), costs.append(0)
    f.add_arcs_with_capacity_and_unit_cost(np.array(tails), np.array(heads), np.array(caps), np.array(costs))
    f.set_node_supply(0, N)
    f.set_node_supply(sink, -N)
    if f.solve() != f.OPTIMAL:
        raise PlacementError("lower bound: the leaf assignment flow failed")
    return f.optimal_cost() / scale


def two_hub_min(classes: list[tuple[tuple[float, float], int]], direct: float, scale: float,
                r_max: int = 24) -> float:
    """Exact least cost over the unbounded mesh of two hubs (a direct edge of
    weight `direct`) and leaves linked to them: hub 2's offset is enumerated
    by distance R until no farther offset can be cheaper (each leaf pays at
    least min(w1, w2) * R, the direct edge direct * R)."""
    link = sum(min(w) * c for w, c in classes) + direct
    if link <= 0:  # nothing ties the hubs together: two independent stars
        return star_cost([w[0] for w, c in classes for _ in range(c) if w[0] > 0]) + \
            star_cost([w[1] for w, c in classes for _ in range(c) if w[1] > 0])
    best, R = math.inf, 0
    while True:
        R += 1
        for dx in range(R, (R - 1) // 2, -1):
            dy = R - dx  # offsets up to symmetry: dx >= dy >= 0
            if dy > dx:
                continue
            v = exact_cost([(0, 0), (dx, dy)], classes, scale) + direct * R
            best = min(best, v)
        if (R + 1) * link >= best:
            return best
        if R >= r_max:
            return min(best, (R + 1) * link)
