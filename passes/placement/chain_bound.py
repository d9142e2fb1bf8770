"""The hop bound of a chain of single-part hubs (n-S4D stacks): windows of
three segments solved exactly, joined by dynamic programming over the chain."""
from __future__ import annotations

import math

import numpy as np
from s4dc.passes.placement.problem import Problem, scale_of
from s4dc.passes.placement.unbounded_mesh import exact_cost, two_hub_min

# (hubs, segments of leaves, w_in per leaf, w_out per leaf, direct hub-hub weight per segment)
HubChain = tuple[list[int], list[list[int]], dict[int, float], dict[int, float], list[float]]

_SYMS = ((1, 0, 0, 1), (-1, 0, 0, 1), (1, 0, 0, -1), (-1, 0, 0, -1),
         (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, -1, 0), (0, -1, -1, 0))


def _canonical(offs: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Hub offsets up to the mesh's symmetries (rotations, reflections)."""
    return min(tuple((a * dx + b * dy, c * dx + d * dy) for dx, dy in offs) for a, b, c, d in _SYMS)


def _offsets(R: int) -> list[tuple[int, int]]:
    return [(dx, dy) for dx in range(-R, R + 1) for dy in range(-R, R + 1) if 0 < abs(dx) + abs(dy) <= R]


class ChainBound:
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

    def __init__(self, chain: HubChain, R: int = 4, k: int = 3, exact_cap: int = 4000):
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
        self.scale = scale_of(vals)
        self.cache: dict[tuple, float] = {}
        self.tables: dict[tuple, list] = {}
        self.flows = 0
        self.batch = 24
        # per segment: exact minimum, the 'far' value, and the value at each offset
        self.smin, self.out = [], []
        for cls, d in self.sig:
            key = ("min", cls, d)
            if key not in self.cache:
                self.cache[key] = two_hub_min([(w, c) for w, c in cls], d, self.scale)
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
            v = exact_cost(pos, classes, self.scale) + direct
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


def hub_chain(prob: Problem) -> HubChain | None:
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
