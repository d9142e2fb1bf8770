"""Place: assign the parts of a partitioning to Loihi 2 cores, minimizing
messages per time step times their route cost, and report how far the
result can be from optimal (docs/placement.md).

    doc = place(partition(graph, spec), spec, chips=4, seed=0, budget=30)
    print(summary(doc)); Path("placement.json").write_text(placement_json(doc))

Placements, all from the same code:

- naive: Lava's first-come order, part i on global core i (chip i // 128).
- greedy: parts in graph order, each on the free core with the least
  traffic-weighted route cost to its placed neighbours (the best of four
  variants: corner or centre start, with or without room for what follows).
- optimized: (several chips) a chip-level split, the part order cut into
  contiguous chunks on adjacent chips (exact dynamic programming, then a
  CP-SAT model of the chip assignment hinted with it, one worker,
  deterministic time), greedy inside each chip; then simulated annealing
  over the whole system with a fixed seed and a fixed number of moves. The
  best of these and greedy is kept.

Cost of a message from core a to core b: X-Y routing on the global mesh
(chips tiled on their grid): hop_cost per on-chip link, chip_link_cost per
chip-to-chip link. Objective = traffic (sum of messages x route cost) +
router_load_weight x the busiest router's load (messages per step it
injects, forwards or delivers).

Lower bound: hops on an unbounded mesh (the largest of: edge groups solved
exactly where they have one or two hub parts; stars around the parts with
most neighbours; for a chain of single-part hubs, windows of three segments
solved exactly, joined by dynamic programming), plus chip
crossings from exact least cuts of chip-sized sets, plus the busiest part's
own messages for the router term. Exact assignment subproblems use
OR-tools' min-cost flow.

Determinism: no wall clock decides anything. `budget` is in work units (one
unit is about one second on a 2-core development machine): annealing moves
and CP-SAT deterministic time scale with it. Same input, seed and budget ->
the same document (timing aside, under the separate "timing" key that
`placement_json` leaves out).
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from s4dc.passes.partition import Partitioning
from s4dc.targets.loihi2.hardware import HardwareSpec, PlacementError, ResourceError, load_spec

PLACEMENT_FORMAT = "s4dc-placement"
PLACEMENT_VERSION = 1
DEFAULT_BUDGET = 30.0
MAX_BUDGET = 3600.0
# Annealing moves per work unit (~1 s of CPU on the development machine).
MOVES_PER_UNIT = 700_000
# CP-SAT's deterministic time for the chip split: this share of the budget, at most the cap.
CPSAT_SHARE = 0.05
CPSAT_MAX_DTIME = 5.0
NEAR_RADIUS = 3      # annealing picks targets within this many hops
DENSE_MATRIX_MAX = 2048  # cores up to which the cost matrix is kept as nested lists

Progress = Callable[[str], None]


# ---------------------------------------------------------------------------
class _Problem:
    """Parts, weighted edges and the cores of the chips in use."""

    def __init__(self, P: Partitioning, spec: HardwareSpec, chips_used: int):
        self.spec, self.P = spec, P
        self.n = len(P.parts)
        self.K = chips_used
        cpc = spec.cores_per_chip
        self.M = chips_used * cpc
        g = np.arange(self.M)
        chip, local = g // cpc, g % cpc
        gxy = np.array([spec.chip_xy(int(c)) for c in range(chips_used)], dtype=np.int64).reshape(-1, 2)
        self.GX, self.GY = gxy[chip, 0], gxy[chip, 1]
        self.lx, self.ly = local % spec.mesh[0], local // spec.mesh[0]
        self.X = self.GX * spec.mesh[0] + self.lx
        self.Y = self.GY * spec.mesh[1] + self.ly
        self.chip = chip
        self.hop, self.extra = float(spec.hop_cost), float(spec.chip_link_cost - spec.hop_cost)
        # Directed edges (router load) and symmetric weights (cost).
        self.esrc = np.array([e.src for e in P.edges], dtype=np.int64)
        self.edst = np.array([e.dst for e in P.edges], dtype=np.int64)
        self.ew = np.array([e.messages_per_step for e in P.edges], dtype=np.float64)
        sym: dict[tuple[int, int], float] = {}
        for e in P.edges:
            if e.src == e.dst:
                continue
            k = (min(e.src, e.dst), max(e.src, e.dst))
            sym[k] = sym.get(k, 0.0) + e.messages_per_step
        self.sym = dict(sorted(sym.items()))
        self.nbrs: list[list[tuple[int, float]]] = [[] for _ in range(self.n)]
        for (a, b), w in self.sym.items():
            self.nbrs[a].append((b, w))
            self.nbrs[b].append((a, w))
        self.pa = np.array([a for a, _ in self.sym], dtype=np.int64)
        self.pb = np.array([b for _, b in self.sym], dtype=np.int64)
        self.pw = np.array(list(self.sym.values()), dtype=np.float64)
        self._D: list[list[float]] | None = None
        self._adj: list[np.ndarray] | None = None

    # -- costs ---------------------------------------------------------------
    def cost(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        hops = np.abs(self.X[a] - self.X[b]) + np.abs(self.Y[a] - self.Y[b])
        cross = np.abs(self.GX[a] - self.GX[b]) + np.abs(self.GY[a] - self.GY[b])
        return self.hop * hops + self.extra * cross

    def cost_from(self, cores: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """For every core c: sum_j weights[j] * cost(c, cores[j])."""
        out = np.zeros(self.M)
        for c, w in zip(cores.tolist(), weights.tolist()):
            out += w * (self.hop * (np.abs(self.X - self.X[c]) + np.abs(self.Y - self.Y[c]))
                        + self.extra * (np.abs(self.GX - self.GX[c]) + np.abs(self.GY - self.GY[c])))
        return out

    def adjacent(self) -> list[np.ndarray]:
        """Mesh neighbours of every core (one hop, across chip borders too)."""
        if self._adj is None:
            self._adj = [np.nonzero(np.abs(self.X - self.X[c]) + np.abs(self.Y - self.Y[c]) == 1)[0]
                         for c in range(self.M)]
        return self._adj

    def D(self) -> list[list[float]] | _CostRows:
        """Route cost between cores as nested lists (fast to index from
        Python); for large systems, rows computed on demand."""
        if self._D is None:
            if self.M > DENSE_MATRIX_MAX:
                self._D = _CostRows(self)
            else:
                g = np.arange(self.M)
                integral = float(self.hop).is_integer() and float(self.extra).is_integer()
                rows = [self.cost(np.full(self.M, c), g) for c in range(self.M)]
                self._D = [(r.astype(np.int64) if integral else r).tolist() for r in rows]
        return self._D

    def traffic(self, pos: np.ndarray) -> float:
        if not len(self.pw):
            return 0.0
        return float(np.dot(self.pw, self.cost(pos[self.pa], pos[self.pb])))

    def router_loads(self, pos: np.ndarray) -> np.ndarray:
        """Messages per step through every router (X-Y routing: along X in the
        source row, then along Y in the destination column)."""
        W = int(self.X.max()) + 1 if self.M else 1
        H = int(self.Y.max()) + 1 if self.M else 1
        load = np.zeros((H, W))
        xs, ys = self.X[pos[self.esrc]], self.Y[pos[self.esrc]]
        xd, yd = self.X[pos[self.edst]], self.Y[pos[self.edst]]
        for x0, y0, x1, y1, w in zip(xs.tolist(), ys.tolist(), xd.tolist(), yd.tolist(), self.ew.tolist()):
            lo, hi = (x0, x1) if x0 <= x1 else (x1, x0)
            load[y0, lo:hi + 1] += w
            if y1 != y0:
                if y1 > y0:
                    load[y0 + 1:y1 + 1, x1] += w
                else:
                    load[y1:y0, x1] += w
        return load

    def evaluate(self, pos: np.ndarray) -> dict[str, Any]:
        traffic = self.traffic(pos)
        load = float(self.router_loads(pos).max()) if len(self.ew) else 0.0
        hops = np.abs(self.X[pos[self.pa]] - self.X[pos[self.pb]]) + np.abs(self.Y[pos[self.pa]] - self.Y[pos[self.pb]])
        cross = np.abs(self.GX[pos[self.pa]] - self.GX[pos[self.pb]]) + \
            np.abs(self.GY[pos[self.pa]] - self.GY[pos[self.pb]])
        return {"traffic": _r(traffic), "objective": _r(traffic + self.spec.router_load_weight * load),
                "max_router_load": _r(load),
                "message_hops": _r(float(np.dot(self.pw, hops))) if len(self.pw) else 0,
                "chip_crossings": _r(float(np.dot(self.pw, cross))) if len(self.pw) else 0}


class _CostRows:
    """Route-cost rows computed when first used (systems too large for a full matrix)."""

    def __init__(self, prob: _Problem):
        self.prob, self.rows = prob, {}

    def __getitem__(self, c: int) -> list[float]:
        r = self.rows.get(c)
        if r is None:
            g = np.arange(self.prob.M)
            r = self.rows[c] = self.prob.cost(np.full(self.prob.M, c), g).tolist()
            if len(self.rows) > 4096:
                self.rows.pop(next(iter(self.rows)))
        return r


def _r(v: float) -> float | int:
    f = float(v)
    return int(f) if f.is_integer() else round(f, 6)


def _objective(m: dict[str, Any]) -> float:
    return float(m["objective"])


# ---------------------------------------------------------------------------
# Baselines.
def naive(prob: _Problem) -> np.ndarray:
    """Lava's mapper: logical cores in first-come order."""
    return np.arange(prob.n, dtype=np.int64)


GREEDY_VARIANTS = (("corner", 0.0), ("corner", 0.5), ("centre", 0.0), ("centre", 0.5))


def greedy(prob: _Problem, allowed: np.ndarray | None = None, start: str = "corner",
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


def greedy_best(prob: _Problem, allowed: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The best greedy variant (GREEDY_VARIANTS) by traffic; ties: the first."""
    best, name, val = None, "", math.inf
    for start, crowd in GREEDY_VARIANTS:
        pos = greedy(prob, allowed, start, crowd)
        v = prob.traffic(pos)
        if v < val - 1e-9:
            best, name, val = pos, f"{start} start, crowding {crowd}", v
    return best, name


# ---------------------------------------------------------------------------
# Chip-level split.
def chip_split_dp(prob: _Problem) -> np.ndarray:
    """Contiguous chunks of the part order (topological) on the chips in
    snake order over the chip grid, at most cores_per_chip parts each:
    least weight of edges crossing chunk boundaries, then (ties) the most
    even chunk sizes, exact by dynamic programming. Returns chip per part."""
    n, K, C = prob.n, prob.K, prob.spec.cores_per_chip
    order = _snake_chips(prob.spec, K)
    if K == 1:
        return np.zeros(n, dtype=np.int64)
    # cut[b]: weight of edges (a, c) with a < b <= c in part order
    scale = _scale_of(prob.pw.tolist())
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


def chip_split_cpsat(prob: _Problem, hint: np.ndarray, seed: int, dtime: float) -> tuple[np.ndarray, dict]:
    """CP-SAT model of the chip assignment: a chip per part, at most
    cores_per_chip parts per chip (a few cores kept free on each chip when
    the parts allow it), minimizing messages x chip-grid distance, then the
    fullest chip. Hinted with `hint`, one worker, deterministic time limit;
    returns the hint if CP-SAT finds nothing better."""
    from ortools.sat.python import cp_model

    n, K, C = prob.n, prob.K, prob.spec.cores_per_chip
    scale = _scale_of(prob.pw.tolist())
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
    info = {"status": solver.status_name(st), "deterministic_time": _r(round(solver.deterministic_time, 3))}
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


# ---------------------------------------------------------------------------
# Simulated annealing.
def anneal(prob: _Problem, pos: np.ndarray, moves: int, seed: int,
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


def _near(prob: _Problem, r: int) -> list[list[int]]:
    out = []
    X, Y = prob.X, prob.Y
    for c in range(prob.M):
        d = np.abs(X - X[c]) + np.abs(Y - Y[c])
        lst = np.nonzero((d <= r) & (d > 0))[0].tolist()
        out.append(lst)
    return out


# ---------------------------------------------------------------------------
# Lower bound.
#
# traffic = hop_cost * sum_e w_e hops_e + (chip_link_cost - hop_cost) * sum_e w_e crossings_e.
# hops_e is at least the distance on an unbounded mesh: the first sum is bounded
# by splitting the edges into groups, bounding each group's minimum on the
# unbounded mesh, and adding (a placement's cost per group is at least each
# group's own minimum). The second sum is bounded by minimum cuts.

_SYMS = ((1, 0, 0, 1), (-1, 0, 0, 1), (1, 0, 0, -1), (-1, 0, 0, -1),
         (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, -1, 0), (0, -1, -1, 0))


def _dist_profile(k: int) -> list[int]:
    """The k smallest distances from a cell to k other distinct cells of the
    unbounded mesh: 4r cells at distance r."""
    out, r = [], 1
    while len(out) < k:
        out += [r] * min(4 * r, k - len(out))
        r += 1
    return out


def _star(weights: list[float]) -> float:
    """Exact least cost of a part linked to parts of these weights (a star)."""
    ws = sorted(weights, reverse=True)
    return float(sum(w * d for w, d in zip(ws, _dist_profile(len(ws)))))


def _scale_of(values) -> float:
    """1 when every weight is an integer (exact), else 1000 (costs floored: still a bound)."""
    return 1.0 if all(float(v).is_integer() for v in values) else 1000.0


def _exact_cost(hubs: list[tuple[int, int]], classes: list[tuple[tuple[float, ...], int]], scale: float) -> float:
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


def _two_hub_min(classes: list[tuple[tuple[float, float], int]], direct: float, scale: float,
                 r_max: int = 24) -> float:
    """Exact least cost over the unbounded mesh of two hubs (a direct edge of
    weight `direct`) and leaves linked to them: hub 2's offset is enumerated
    by distance R until no farther offset can be cheaper (each leaf pays at
    least min(w1, w2) * R, the direct edge direct * R)."""
    link = sum(min(w) * c for w, c in classes) + direct
    if link <= 0:  # nothing ties the hubs together: two independent stars
        return _star([w[0] for w, c in classes for _ in range(c) if w[0] > 0]) + \
            _star([w[1] for w, c in classes for _ in range(c) if w[1] > 0])
    best, R = math.inf, 0
    while True:
        R += 1
        for dx in range(R, (R - 1) // 2, -1):
            dy = R - dx  # offsets up to symmetry: dx >= dy >= 0
            if dy > dx:
                continue
            v = _exact_cost([(0, 0), (dx, dy)], classes, scale) + direct * R
            best = min(best, v)
        if (R + 1) * link >= best:
            return best
        if R >= r_max:
            return min(best, (R + 1) * link)


def _canonical(offs: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Hub offsets up to the mesh's symmetries (rotations, reflections)."""
    return min(tuple((a * dx + b * dy, c * dx + d * dy) for dx, dy in offs) for a, b, c, d in _SYMS)


def _offsets(R: int) -> list[tuple[int, int]]:
    return [(dx, dy) for dx in range(-R, R + 1) for dy in range(-R, R + 1) if 0 < abs(dx) + abs(dy) <= R]


class _ChainBound:
    """Lower bound for a chain of single-part hubs h_0..h_m with leaves
    between consecutive hubs (segment i: leaves linked to h_i and h_i+1).

    Every placement's cost is sum_i g_i (g_i: segment i's cost). With the
    chain padded by empty segments, every segment lies in exactly k windows
    of k consecutive segments, so sum_i g_i = (1/k) sum_W sum_{i in W} g_i
    >= (1/k) sum_W E_W(o), E_W the exact least cost of window W's segments
    together (distinct cells) given the hub offsets o inside it. The least
    sum over offset sequences is found by dynamic programming over the chain
    (state: the last k-1 offsets). Offsets are enumerated up to distance R;
    a farther one is a state 'far' whose segment costs at least
    max(its unconstrained minimum, (R + 1) x its leaves' min(w_in, w_out) +
    direct). Window values start at the sum of single-segment values (a
    lower bound) and are solved exactly where the least sequence uses them,
    until it uses only exact values or `exact_cap` solves are spent: the
    result is a lower bound at every step."""

    def __init__(self, chain, R: int = 4, k: int = 3, exact_cap: int = 4000):
        _, groups, w_in, w_out, direct = chain
        self.m = len(groups)
        self.R, self.k, self.cap = R, min(k, max(1, len(groups))), exact_cap
        self.O = _offsets(R)
        self.nO = len(self.O)
        self.sig: list[tuple] = []
        vals = []
        for i, grp in enumerate(groups):
            cnt: dict[tuple[float, float], int] = {}
            for p in grp:
                key = (float(w_in[p]), float(w_out[p]))
                cnt[key] = cnt.get(key, 0) + 1
                vals += list(key)
            self.sig.append((tuple(sorted(cnt.items())), float(direct[i])))
            vals.append(direct[i])
        self.scale = _scale_of(vals)
        self.cache: dict[tuple, float] = {}
        self.tables: dict[tuple, list] = {}
        self.flows = 0
        self.batch = 24
        # per segment: exact minimum, the 'far' value, and the value at each offset
        self.smin, self.out = [], []
        for cls, d in self.sig:
            key = ("min", cls, d)
            if key not in self.cache:
                self.cache[key] = _two_hub_min([(w, c) for w, c in cls], d, self.scale)
            smin = self.cache[key]
            link = sum(min(w) * c for w, c in cls) + d
            self.smin.append(smin)
            self.out.append(max(smin, (R + 1) * link))
        self.S = [np.array([self._window((i,), (o,)) for o in self.O] + [self.out[i]]) for i in range(self.m)]

    def _window(self, idx: tuple[int, ...], offs: tuple[tuple[int, int], ...]) -> float:
        pos = [(0, 0)]
        for dx, dy in offs:
            pos.append((pos[-1][0] + dx, pos[-1][1] + dy))
        if len(set(pos)) < len(pos):
            return math.inf
        key = (tuple(self.sig[i] for i in idx), _canonical(offs))
        v = self.cache.get(key)
        if v is None:
            n = len(idx)
            classes = []
            direct = 0.0
            for j, i in enumerate(idx):
                cls, d = self.sig[i]
                for (wi, wo), c in cls:
                    w = [0.0] * (n + 1)
                    w[j], w[j + 1] = wi, wo
                    classes.append((tuple(w), c))
                direct += d * (abs(offs[j][0]) + abs(offs[j][1]))
            v = _exact_cost(pos, classes, self.scale) + direct
            self.flows += 1
            self.cache[key] = v
        return v

    def _table(self, idx: tuple[int, ...]) -> list:
        """[values, exact mask] over all offset tuples of a window (index nO:
        'far'), shared by windows of the same segments' signatures. Values
        start at the sum of single-segment values and are raised to the exact
        window value where the dynamic program asks for them."""
        key = tuple(self.sig[i] for i in idx)
        t = self.tables.get(key)
        if t is None:
            n1 = self.nO + 1
            cheap = np.zeros((n1,) * len(idx))
            for j, i in enumerate(idx):
                shape = [1] * len(idx)
                shape[j] = n1
                cheap = cheap + self.S[i].reshape(shape)
            exact = np.zeros(cheap.shape, dtype=bool)
            far = np.zeros(cheap.shape, dtype=bool)
            for j in range(len(idx)):
                sl = [slice(None)] * len(idx)
                sl[j] = self.nO
                far[tuple(sl)] = True
            exact |= far | ~np.isfinite(cheap)
            t = self.tables[key] = [cheap, exact]
        return t

    def _refine(self, idx: tuple[int, ...], ij: tuple[int, ...]) -> bool:
        vals, exact = self._table(idx)
        if exact[ij]:
            return False
        v = self._window(idx, tuple(self.O[t] for t in ij))
        vals[ij] = max(v, vals[ij])
        exact[ij] = True
        return True

    def bound(self) -> float:
        m, k = self.m, self.k
        if m == 0:
            return 0.0
        if k == 1 or m == 1:
            return float(sum(self.smin))
        while True:
            value, windows = self._dp()
            changed = False
            touched: dict[tuple, tuple[int, ...]] = {}
            for idx, ij in windows:
                if self.flows >= self.cap:
                    break
                changed |= self._refine(idx, ij)
                touched.setdefault(tuple(self.sig[i] for i in idx), idx)
            if not changed or self.flows >= self.cap:
                return value
            # solve a few more of the cheapest open values of each table used
            for idx in touched.values():
                vals, exact = self._table(idx)
                open_ = np.where(exact, np.inf, vals)
                for f in np.argsort(open_, axis=None, kind="stable")[: self.batch].tolist():
                    if not math.isfinite(float(open_.flat[f])) or self.flows >= self.cap:
                        break
                    self._refine(idx, np.unravel_index(f, vals.shape))

    def _dp(self) -> tuple[float, list]:
        """Least (1/k) sum of window values over offset sequences, and the
        windows with the offsets the least sequence uses."""
        m, k = self.m, self.k
        S = self.S
        if k == 2:
            f = S[0].copy()
            back = []
            for i in range(m - 1):
                V = self._table((i, i + 1))[0]
                tot = f[:, None] + V
                back.append(np.argmin(tot, axis=0))
                f = tot.min(axis=0)
            f = f + S[m - 1]
            o = [int(np.argmin(f))]
            value = 0.5 * float(f[o[0]])
            for b in reversed(back):
                o.append(int(b[o[-1]]))
            o.reverse()
            return value, [((i, i + 1), (o[i], o[i + 1])) for i in range(m - 1)]
        # k == 3: state (o_i, o_i+1)
        f = S[0][:, None] + self._table((0, 1))[0]
        back = []
        for i in range(m - 2):
            V = self._table((i, i + 1, i + 2))[0]
            tot = f[:, :, None] + V
            back.append(np.argmin(tot, axis=0))
            f = tot.min(axis=0)
        f = f + self._table((m - 2, m - 1))[0] + S[m - 1][None, :]
        b, c = np.unravel_index(int(np.argmin(f)), f.shape)
        value = float(f[b, c]) / 3.0
        o = [int(c), int(b)]
        for bk in reversed(back):
            o.append(int(bk[o[-1], o[-2]]))
        o.reverse()
        wins = [((0, 1), (o[0], o[1]))]
        wins += [((i, i + 1, i + 2), (o[i], o[i + 1], o[i + 2])) for i in range(m - 2)]
        wins.append(((m - 2, m - 1), (o[m - 2], o[m - 1])))
        return value, wins


def lower_bound(prob: _Problem, exact_cap: int = 4000) -> dict[str, Any]:
    """A lower bound on the objective of any placement (module doc)."""
    P = prob.P
    layer_of = [p.layer for p in P.parts]
    order: dict[str, int] = {}
    nparts: dict[str, int] = {}
    for p in P.parts:
        order.setdefault(p.layer, len(order))
        nparts[p.layer] = nparts.get(p.layer, 0) + 1
    # 1. Edges grouped by owner layer (the side with more parts), each group
    #    bounded exactly where it has at most two hub parts.
    groups: dict[str, list[tuple[int, int, float]]] = {}
    for (a, b), w in prob.sym.items():
        la, lb = layer_of[a], layer_of[b]
        owner = la if la == lb else max((la, lb), key=lambda L: (nparts[L], order[L]))
        groups.setdefault(owner, []).append((a, b, w))
    group_lb = 0.0
    methods: dict[str, int] = {}
    for owner in sorted(groups, key=lambda L: order[L]):
        for comp in _components(groups[owner]):
            v, how = _component_bound(comp, layer_of, owner)
            group_lb += v
            methods[how] = methods.get(how, 0) + 1
    hop_lb, hop_how = group_lb, "edge groups by layer"
    # 1b. Stars: every edge owned by its endpoint with more neighbours (ties:
    #     the lower id); a part's owned edges cost at least its star.
    deg = [len(nb) for nb in prob.nbrs]
    owned: dict[int, list[float]] = {}
    for (a, b), w in prob.sym.items():
        o = a if (deg[a], -a) >= (deg[b], -b) else b
        owned.setdefault(o, []).append(w)
    star_lb = sum(_star(ws) for ws in owned.values())
    detail_star = _r(star_lb)
    if star_lb > hop_lb:
        hop_lb, hop_how = star_lb, "stars around the parts with most neighbours"
    # 2. A chain of single-part hubs: overlapping windows of segments.
    chain = _hub_chain(prob)
    detail: dict[str, Any] = {"groups": _r(group_lb), "stars": detail_star}
    if chain is not None and len(chain[1]) >= 2:
        cb = _ChainBound(chain, exact_cap=exact_cap)
        v = cb.bound()
        detail["chain_windows"] = _r(v)
        detail["chain_window_flows"] = cb.flows
        if v > hop_lb:
            hop_lb, hop_how = v, f"chain of hubs, windows of {cb.k} segments"
    cross_lb, cross_how = _crossing_bound(prob) if prob.extra > 0 else (0.0, "no chip-link surcharge")
    io = np.zeros(prob.n)
    np.add.at(io, prob.esrc, prob.ew)
    np.add.at(io, prob.edst, prob.ew)
    router_lb = float(io.max()) if prob.n else 0.0
    traffic_lb = prob.hop * hop_lb + prob.extra * cross_lb
    total = traffic_lb + prob.spec.router_load_weight * router_lb
    return {"lower_bound": _r(total), "traffic_lower_bound": _r(traffic_lb),
            "components": {"message_hops": _r(hop_lb), "chip_crossings": _r(cross_lb),
                           "max_router_load": _r(router_lb)},
            "methods": {"message_hops": hop_how, "edge_groups": dict(sorted(methods.items())),
                        "chip_crossings": cross_how, "max_router_load": "busiest part's own messages"},
            "detail": detail}


def _components(es: list[tuple[int, int, float]]) -> list[list[tuple[int, int, float]]]:
    """A group's edges split into sets connected through shared parts."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, b, _ in es:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list] = {}
    for e in es:
        comps.setdefault(find(e[0]), []).append(e)
    return [comps[k] for k in sorted(comps)]


def _component_bound(es: list[tuple[int, int, float]], layer_of: list[str], owner: str) -> tuple[float, str]:
    """The best of: stars around hub parts, stars around the owner's parts,
    and (at most two hubs, no edges inside the owner layer) the exact minimum."""
    hubs = sorted({x for a, b, _ in es for x in (a, b) if layer_of[x] != owner})
    internal = [(a, b, w) for a, b, w in es if layer_of[a] == owner and layer_of[b] == owner]
    hub_w: dict[int, list[float]] = {h: [] for h in hubs}
    leaf_w: dict[int, list[float]] = {}
    for a, b, w in es:
        if layer_of[a] != owner:
            hub_w[a].append(w)
            leaf_w.setdefault(b, []).append(w)
        elif layer_of[b] != owner:
            hub_w[b].append(w)
            leaf_w.setdefault(a, []).append(w)
        else:
            leaf_w.setdefault(min(a, b), []).append(w)
    s_hub = sum(_star(v) for v in hub_w.values()) + sum(w for _, _, w in internal)
    s_leaf = sum(_star(v) for v in leaf_w.values())
    best, how = max((s_hub, "hub stars"), (s_leaf, "part stars"))
    if not internal and 1 <= len(hubs) <= 2:
        hi = {h: j for j, h in enumerate(hubs)}
        vec: dict[int, list[float]] = {}
        for a, b, w in es:
            h, p = (a, b) if layer_of[a] != owner else (b, a)
            vec.setdefault(p, [0.0] * len(hubs))[hi[h]] += w
        cnt: dict[tuple[float, ...], int] = {}
        for v in vec.values():
            cnt[tuple(v)] = cnt.get(tuple(v), 0) + 1
        classes = sorted(cnt.items())
        scale = _scale_of([x for v in vec.values() for x in v])
        if len(hubs) == 1:
            v = _exact_cost([(0, 0)], classes, scale)
        else:
            v = _two_hub_min(classes, 0.0, scale)
        if v >= best:
            best, how = v, f"exact {len(hubs)}-hub group"
    return best, how


def _crossing_bound(prob: _Problem) -> tuple[float, str]:
    """Lower bound on sum_e w_e x (chip-to-chip links e crosses): each chip's
    set of parts is cut from the rest, every crossing edge is in two chips'
    cuts, so the sum is at least half the least total of the chips' cuts.
    For a chain of hubs the least cut of a set of s parts (holding the first
    hub or not, the last hub or not) is exact by dynamic programming; else
    the global minimum cut."""
    spec = prob.spec
    C, n = spec.cores_per_chip, prob.n
    if math.ceil(n / C) <= 1:
        return 0.0, "fits one chip"
    chain = _hub_chain(prob)
    if chain is None:
        import networkx as nx
        g = nx.Graph()
        g.add_nodes_from(range(n))
        for (a, b), w in prob.sym.items():
            g.add_edge(a, b, weight=w)
        if not nx.is_connected(g):
            return 0.0, "disconnected parts"
        lam, _ = nx.stoer_wagner(g)
        return 0.5 * math.ceil(n / C) * float(lam), "global minimum cut for each chip needed"
    phi = _chain_cuts(chain, C)
    INF = math.inf
    g = np.full(n + 1, INF)
    g[0] = 0.0
    mid = np.array(phi[0][0][: C + 1], dtype=np.float64)
    for _ in range(min(spec.chips - 1, n)):
        g2 = g.copy()
        for t in range(1, min(C, n) + 1):
            np.minimum(g2[t:], g[: n + 1 - t] + mid[t], out=g2[t:])
        if np.array_equal(g2, g):
            break
        g = g2
    gl = g.tolist()
    best = INF
    for s1 in range(1, min(C, n) + 1):
        best = min(best, phi[1][1][s1] + gl[n - s1])
        for s2 in range(1, min(C, n - s1) + 1):
            best = min(best, phi[1][0][s1] + phi[0][1][s2] + gl[n - s1 - s2])
    return 0.5 * best, "exact least cuts of chip-sized sets of the hub chain"


def _hub_chain(prob: _Problem):
    """The parts as a chain of single-part hubs h_0..h_m with segments of
    leaves between consecutive hubs (every edge: h_i - h_i+1, or a leaf of
    segment i with h_i or h_i+1), or None. Returns (hubs, segments, w_in,
    w_out, direct)."""
    P = prob.P
    layers: list[str] = []
    members: dict[str, list[int]] = {}
    for p in P.parts:
        if p.layer not in members:
            layers.append(p.layer)
        members.setdefault(p.layer, []).append(p.id)
    hubs: list[int] = []
    groups: list[list[int]] = []
    pend: list[int] = []
    for L in layers:
        if len(members[L]) == 1:
            if hubs:
                groups.append(pend)
            elif pend:
                return None
            hubs.append(members[L][0])
            pend = []
        else:
            if not hubs:
                return None
            pend += members[L]
    if pend or not hubs:
        return None
    idx = {h: i for i, h in enumerate(hubs)}
    gi = {p: i for i, grp in enumerate(groups) for p in grp}
    w_in = {p: 0.0 for p in gi}
    w_out = {p: 0.0 for p in gi}
    direct = [0.0] * len(groups)
    for (a, b), w in prob.sym.items():
        if a in idx and b in idx:
            i, j = sorted((idx[a], idx[b]))
            if j != i + 1:
                return None
            direct[i] += w
        elif a in idx or b in idx:
            h, p = (a, b) if a in idx else (b, a)
            i = gi[p]
            if idx[h] == i:
                w_in[p] += w
            elif idx[h] == i + 1:
                w_out[p] += w
            else:
                return None
        else:
            return None
    return hubs, groups, w_in, w_out, direct


def _chain_cuts(chain, C: int) -> list[list[list[float]]]:
    """phi[a][b][s]: least cut weight of a set of s <= C parts of a hub
    chain holding the first hub iff a and the last hub iff b (exact, by
    dynamic programming over the hubs; a segment's leaves inside the set are
    the cheapest ones for the hubs' membership)."""
    _, groups, w_in, w_out, direct = chain
    INF = math.inf
    S = C
    phi = [[[INF] * (S + 1) for _ in range(2)] for _ in range(2)]
    for a in (0, 1):
        f = [[INF] * (S + 1) for _ in range(2)]
        f[a][a] = 0.0
        for i, grp in enumerate(groups):
            g = [[INF] * (S + 1) for _ in range(2)]
            for x in (0, 1):
                for y in (0, 1):
                    ins = [w_in[p] * (1 - x) + w_out[p] * (1 - y) for p in grp]
                    outs = [w_in[p] * x + w_out[p] * y for p in grp]
                    base = sum(outs)
                    pref = [0.0]
                    for d in sorted(i_ - o for i_, o in zip(ins, outs)):
                        pref.append(pref[-1] + d)
                    hub_cut = direct[i] * (x != y)
                    fx, gy = f[x], g[y]
                    for s in range(S + 1):
                        v0 = fx[s]
                        if v0 == INF:
                            continue
                        for t in range(len(grp) + 1):
                            s2 = s + t + y
                            if s2 > S:
                                break
                            v = v0 + base + pref[t] + hub_cut
                            gy[s2] = min(gy[s2], v)
            f = g
        for b in (0, 1):
            phi[a][b] = f[b]
    return phi


# ---------------------------------------------------------------------------
def place(partitioning: Partitioning, spec: HardwareSpec | dict | str | None = None, *,
          chips: int | None = None, seed: int = 0, budget: float = DEFAULT_BUDGET,
          progress: Progress | None = None) -> dict[str, Any]:
    """Place a partitioning (module doc); returns the placement.json document."""
    say = progress or (lambda m: None)
    t_all = time.perf_counter()
    spec = partitioning.spec if spec is None else (spec if isinstance(spec, HardwareSpec) else load_spec(spec))
    if chips is not None:
        spec = spec.replace(chips=chips)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PlacementError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget <= MAX_BUDGET:
        raise PlacementError(f"budget must be 0 to {MAX_BUDGET} work units, got {budget!r}")
    n = partitioning.n_parts
    if n > spec.cores:
        raise ResourceError(f"cores: the network needs {n} cores, the system has {spec.cores} "
                            f"({spec.chips} chip{'s' if spec.chips > 1 else ''} x {spec.cores_per_chip}); "
                            f"use --chips {math.ceil(n / spec.cores_per_chip)} or more")
    _check_fit(partitioning, spec)
    K = max(1, math.ceil(n / spec.cores_per_chip))
    prob = _Problem(partitioning, spec, K)
    timing: dict[str, float] = {}

    t = time.perf_counter()
    search: dict[str, Any] = {"seed": seed, "budget": _r(budget)}
    cand: dict[str, np.ndarray] = {"naive": naive(prob)}
    if n:
        cand["greedy"], search["greedy_variant"] = greedy_best(prob)
    else:
        cand["greedy"] = cand["naive"]
    timing["greedy_s"] = time.perf_counter() - t
    say(f"placement: naive and greedy for {n} parts on {K} chip(s)")

    t = time.perf_counter()
    lb = lower_bound(prob) if n else {"lower_bound": 0, "traffic_lower_bound": 0, "components": {},
                                      "methods": {}, "detail": {}}
    timing["bound_s"] = time.perf_counter() - t
    floor = float(lb["traffic_lower_bound"])

    t = time.perf_counter()
    opt = cand["greedy"]
    if n > 1 and prob.traffic(opt) > floor + 1e-9:
        start = cand["greedy"]
        if K > 1:
            split = chip_split_dp(prob)
            split, info = chip_split_cpsat(prob, split, seed, min(CPSAT_MAX_DTIME, CPSAT_SHARE * budget))
            start, variant = greedy_best(prob, allowed=split)
            cnt = np.bincount(split, minlength=K)
            search["chip_split"] = {"method": "dynamic programming over the part order, then CP-SAT (hinted)",
                                    "cpsat": info, "parts_per_chip": [int(c) for c in cnt],
                                    "greedy_variant": variant}
        moves = int(budget * MOVES_PER_UNIT)
        say(f"placement: annealing, {moves} moves")
        sa, done = anneal(prob, start, moves, seed, floor)
        search["anneal_moves"] = done
        if done < moves:
            search["anneal_stopped"] = "traffic reached the lower bound"
        opt = min((sa, start, cand["greedy"]), key=lambda pos: _objective(prob.evaluate(pos)))
    timing["optimize_s"] = time.perf_counter() - t
    evals = {k: prob.evaluate(v) for k, v in cand.items()}
    cand["optimized"], evals["optimized"] = opt, prob.evaluate(opt)

    best = _objective(evals["optimized"])
    gap = (best - float(lb["lower_bound"])) / best if best > 0 else 0.0
    timing["place_s"] = time.perf_counter() - t_all
    return _document(prob, cand, evals, lb, gap, search, {k: round(v, 3) for k, v in timing.items()})


def _check_fit(P: Partitioning, spec: HardwareSpec) -> None:
    """Every part fits a core of `spec` (partitions made for another spec)."""
    for p in P.parts:
        for k, cap in (("neuron", spec.neuron_memory_bytes), ("synapse", spec.synapse_memory_bytes),
                       ("axon", spec.axon_memory_bytes)):
            if p.memory[k] > cap:
                raise ResourceError(f"{k} memory: part {p.id} of layer '{p.layer}' needs {p.memory[k]} bytes, "
                                    f"a core has {cap}; partition with this hardware spec")
        if p.neurons > spec.neurons_per_core:
            raise ResourceError(f"neurons: part {p.id} of layer '{p.layer}' needs {p.neurons}, a core has "
                                f"{spec.neurons_per_core}; partition with this hardware spec")


def _document(prob: _Problem, cand: dict[str, np.ndarray], evals: dict[str, dict], lb: dict, gap: float,
              search: dict, timing: dict) -> dict[str, Any]:
    spec, P = prob.spec, prob.P
    cpc = spec.cores_per_chip
    opt = cand["optimized"]
    parts = []
    for p in P.parts:
        g = int(opt[p.id])
        chip, core = g // cpc, g % cpc
        x, y = spec.core_xy(core)
        d = p.to_json()
        d.update({"chip": chip, "core": core, "x": x, "y": y})
        parts.append(d)
    placements = {}
    for k in ("naive", "greedy", "optimized"):
        placements[k] = {**evals[k], "cores": [int(c) for c in cand[k]]}
    naive_t = float(evals["naive"]["traffic"])
    for k in ("greedy", "optimized"):
        placements[k]["traffic_vs_naive"] = _r(round(float(evals[k]["traffic"]) / naive_t, 4)) if naive_t else 1
    used: dict[str, dict[str, int]] = {}
    for k in ("naive", "greedy", "optimized"):
        cnt = np.bincount(cand[k] // cpc, minlength=prob.K) if prob.n else np.zeros(prob.K, dtype=int)
        used[k] = {str(i): int(c) for i, c in enumerate(cnt.tolist())}
    return {
        "format": PLACEMENT_FORMAT, "format_version": PLACEMENT_VERSION,
        "graph": P.graph_name,
        "spec": spec.to_json(),
        "system": {"chips": spec.chips, "chips_used": prob.K, "chip_grid": list(spec.grid),
                   "cores": spec.cores, "parts": prob.n},
        "partitions": parts,
        "edges": [e.to_json() for e in P.edges],
        "layers": P.layers,
        "placements": placements,
        "cores_used_per_chip": used,
        "bound": lb,
        "gap": _r(round(gap, 6)),
        "search": search,
        "timing": timing,
    }


def placement_json(doc: dict[str, Any]) -> str:
    """The deterministic placement.json text: sorted keys, timing left out."""
    return json.dumps(strip_timing(doc), sort_keys=True, indent=1) + "\n"


def strip_timing(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "timing"}


def summary(doc: dict[str, Any]) -> str:
    """The CLI's short summary: cores used per chip, traffic of each
    placement, bound and gap, time."""
    pl = doc["placements"]
    sysd = doc["system"]
    used = doc["cores_used_per_chip"]["optimized"]
    lines = [(f"placement: {sysd['parts']} parts on {sysd['chips_used']} of {sysd['chips']} chip(s); "
              f"cores used per chip: {', '.join(str(v) for v in used.values())}")]
    for k in ("naive", "greedy", "optimized"):
        m = pl[k]
        rel = f"{float(m['traffic_vs_naive']):.2f}x naive" if k != "naive" else ""
        lines.append(f"  {k:<9}  traffic {float(m['traffic']):>10.0f}  {rel:<11}  "
                     f"busiest router {float(m['max_router_load']):.0f}")
    t = doc.get("timing", {})
    lines.append(f"  objective {float(pl['optimized']['objective']):.0f}, lower bound "
                 f"{float(doc['bound']['lower_bound']):.0f}, gap {100 * float(doc['gap']):.1f}%"
                 + (f"; placed in {t['place_s']:.1f} s" if "place_s" in t else ""))
    return "\n".join(lines)


__all__ = ["DEFAULT_BUDGET", "PLACEMENT_FORMAT", "PLACEMENT_VERSION", "lower_bound", "place", "placement_json",
           "strip_timing", "summary"]
