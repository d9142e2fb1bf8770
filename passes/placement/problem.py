"""The placement problem: parts, their symmetric message weights, the cores
of the chips in use and the route cost between them, and the evaluation of
a placement (docs/placement.md)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from s4dc.passes.partition import Partitioning
from s4dc.targets.loihi2.hardware import HardwareSpec, ResourceError

DENSE_MATRIX_MAX = 2048  # cores up to which the cost matrix is kept as nested lists


class Problem:
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

    def D(self) -> list[list[float]] | CostRows:
        """Route cost between cores as nested lists (fast to index from
        Python); for large systems, rows computed on demand."""
        if self._D is None:
            if self.M > DENSE_MATRIX_MAX:
                self._D = CostRows(self)
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
        """The figures of placement `pos` (global core per part) for placement.json."""
        traffic = self.traffic(pos)
        load = float(self.router_loads(pos).max()) if len(self.ew) else 0.0
        hops = np.abs(self.X[pos[self.pa]] - self.X[pos[self.pb]]) + np.abs(self.Y[pos[self.pa]] - self.Y[pos[self.pb]])
        cross = np.abs(self.GX[pos[self.pa]] - self.GX[pos[self.pb]]) + \
            np.abs(self.GY[pos[self.pa]] - self.GY[pos[self.pb]])
        return {"traffic": json_number(traffic),
                "objective": json_number(traffic + self.spec.router_load_weight * load),
                "max_router_load": json_number(load),
                "message_hops": json_number(float(np.dot(self.pw, hops))) if len(self.pw) else 0,
                "chip_crossings": json_number(float(np.dot(self.pw, cross))) if len(self.pw) else 0}


class CostRows:
    """Route-cost rows computed when first used (systems too large for a full matrix)."""

    def __init__(self, prob: Problem):
        self.prob, self.rows = prob, {}

    def __getitem__(self, c: int) -> list[float]:
        r = self.rows.get(c)
        if r is None:
            g = np.arange(self.prob.M)
            r = self.rows[c] = self.prob.cost(np.full(self.prob.M, c), g).tolist()
            if len(self.rows) > 4096:
                self.rows.pop(next(iter(self.rows)))
        return r


def json_number(v: float) -> float | int:
    """A figure for placement.json: integers as integers, fractions to 6 decimals
    (the document stays byte-stable across platforms)."""
    f = float(v)
    return int(f) if f.is_integer() else round(f, 6)


def objective_of(m: dict[str, Any]) -> float:
    """The objective of an evaluated placement (Problem.evaluate)."""
    return float(m["objective"])


def scale_of(values: Iterable[float]) -> float:
    """1 when every weight is an integer (exact), else 1000 (costs floored: still a bound)."""
    return 1.0 if all(float(v).is_integer() for v in values) else 1000.0


def check_fit(P: Partitioning, spec: HardwareSpec) -> None:
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
