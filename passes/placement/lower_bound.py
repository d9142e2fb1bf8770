"""The lower bound on the objective of any placement (docs/placement.md,
"Lower bound and gap").

traffic = hop_cost * sum_e w_e hops_e + (chip_link_cost - hop_cost) * sum_e w_e crossings_e.
hops_e is at least the distance on an unbounded mesh: the first sum is bounded
by splitting the edges into groups, bounding each group's minimum on the
unbounded mesh, and adding (a placement's cost per group is at least each
group's own minimum). The second sum is bounded by minimum cuts.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from s4dc.passes.placement.chain_bound import ChainBound, hub_chain
from s4dc.passes.placement.crossing_bound import crossing_bound
from s4dc.passes.placement.problem import Problem, json_number, scale_of
from s4dc.passes.placement.unbounded_mesh import exact_cost, star_cost, two_hub_min


def lower_bound(prob: Problem, exact_cap: int = 4000) -> dict[str, Any]:
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
    star_lb = sum(star_cost(ws) for ws in owned.values())
    detail_star = json_number(star_lb)
    if star_lb > hop_lb:
        hop_lb, hop_how = star_lb, "stars around the parts with most neighbours"
    # 2. A chain of single-part hubs: overlapping windows of segments.
    chain = hub_chain(prob)
    detail: dict[str, Any] = {"groups": json_number(group_lb), "stars": detail_star}
    if chain is not None and len(chain[1]) >= 2:
        cb = ChainBound(chain, exact_cap=exact_cap)
        v = cb.bound()
        detail["chain_windows"] = json_number(v)
        detail["chain_window_flows"] = cb.flows
        if v > hop_lb:
            hop_lb, hop_how = v, f"chain of hubs, windows of {cb.k} segments"
    cross_lb, cross_how = crossing_bound(prob) if prob.extra > 0 else (0.0, "no chip-link surcharge")
    io = np.zeros(prob.n)
    np.add.at(io, prob.esrc, prob.ew)
    np.add.at(io, prob.edst, prob.ew)
    router_lb = float(io.max()) if prob.n else 0.0
    traffic_lb = prob.hop * hop_lb + prob.extra * cross_lb
    total = traffic_lb + prob.spec.router_load_weight * router_lb
    return {"lower_bound": json_number(total), "traffic_lower_bound": json_number(traffic_lb),
            "components": {"message_hops": json_number(hop_lb), "chip_crossings": json_number(cross_lb),
                           "max_router_load": json_number(router_lb)},
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
    s_hub = sum(star_cost(v) for v in hub_w.values()) + sum(w for _, _, w in internal)
    s_leaf = sum(star_cost(v) for v in leaf_w.values())
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
        scale = scale_of([x for v in vec.values() for x in v])
        if len(hubs) == 1:
            v = exact_cost([(0, 0)], classes, scale)
        else:
            v = two_hub_min(classes, 0.0, scale)
        if v >= best:
            best, how = v, f"exact {len(hubs)}-hub group"
    return best, how
