"""The chip-crossing part of the lower bound: least cuts of chip-sized sets
of parts (exact for a chain of hubs, else the global minimum cut)."""
from __future__ import annotations

import math

import numpy as np
from s4dc.passes.placement.chain_bound import HubChain, hub_chain
from s4dc.passes.placement.problem import Problem


def crossing_bound(prob: Problem) -> tuple[float, str]:
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
    chain = hub_chain(prob)
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


def _chain_cuts(chain: HubChain, C: int) -> list[list[list[float]]]:
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
