"""The place pass: every part on its own core, optimized <= greedy <= naive
traffic on the benchmark models, byte-identical placement.json for the same
input, a lower bound that no placement beats (brute force on small
systems), and errors that name the resource."""
from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from s4dc.passes.partition import partition
from s4dc.passes.placement.lower_bound import lower_bound
from s4dc.passes.placement.problem import Problem
from s4dc.passes.placement.unbounded_mesh import exact_cost, star_cost, two_hub_min
from s4dc.passes.place import place, placement_json, strip_timing, summary
from s4dc.targets.loihi2.hardware import PlacementError, ResourceError, load_spec

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_placement", ROOT / "benchmarks" / "placement.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BENCH = _bench()
BUDGET = 0.3   # work units: a fraction of a second of annealing


def check_doc(doc: dict, P) -> None:
    spec = load_spec(doc["spec"])
    n, cpc = P.n_parts, spec.cores_per_chip
    for k in ("naive", "greedy", "optimized"):
        cores = doc["placements"][k]["cores"]
        assert len(cores) == n and len(set(cores)) == n            # every part once, on its own core
        assert all(0 <= c < doc["system"]["chips_used"] * cpc for c in cores)
        pl = doc["placements"][k]   # each part's chip and mesh position, as its core gives them
        for g, c, x, y in zip(cores, pl["chip"], pl["x"], pl["y"], strict=True):
            assert (c, (x, y)) == (g // cpc, spec.core_xy(g % cpc))
    for d, p in zip(doc["partitions"], P.parts):
        g = doc["placements"]["optimized"]["cores"][p.id]
        assert (d["id"], d["layer"], d["chip"], d["core"]) == (p.id, p.layer, g // cpc, g % cpc)
        assert (d["x"], d["y"]) == spec.core_xy(d["core"])
        opt = doc["placements"]["optimized"]
        assert (d["chip"], d["x"], d["y"]) == (opt["chip"][p.id], opt["x"][p.id], opt["y"][p.id])
        assert d["neurons"] == p.neurons and d["memory_bytes"] == p.memory_bytes
    assert sum(d["neurons"] for d in doc["partitions"]) == P.neurons()
    assert len(doc["edges"]) == len(P.edges)
    obj = float(doc["placements"]["optimized"]["objective"])
    assert float(doc["bound"]["lower_bound"]) <= obj + 1e-6 and 0.0 <= doc["gap"] < 1.0


@pytest.mark.parametrize("name", list(BENCH.MODELS))
def test_benchmark_models_order_and_consistency(name):
    m = BENCH.MODELS[name]
    graph = BENCH.mimo_stack(m["blocks"], m["H"], m["P"]) if "P" in m else BENCH.s4d_stack(m["blocks"], m["H"], m["N"])
    P = partition(graph)
    doc = place(P, chips=m["chips"], budget=BUDGET)
    check_doc(doc, P)
    t = {k: float(doc["placements"][k]["traffic"]) for k in ("naive", "greedy", "optimized")}
    assert t["optimized"] <= t["greedy"] <= t["naive"]
    assert doc["system"]["chips_used"] == m["chips"]
    used = doc["cores_used_per_chip"]["optimized"]
    assert sum(used.values()) == P.n_parts and max(used.values()) <= 128


def test_same_input_gives_byte_identical_placement():
    m = BENCH.MODELS["large"]
    texts = []
    for _ in range(2):
        doc = place(partition(BENCH.s4d_stack(m["blocks"], m["H"], m["N"])), budget=BUDGET, seed=3)
        assert "timing" in doc and "timing" not in json.loads(placement_json(doc))
        texts.append((placement_json(doc), json.dumps(strip_timing(doc), sort_keys=True)))
    assert texts[0] == texts[1]


def test_multi_chip_is_deterministic_and_fills_chips():
    # residual graph (no hub chain): CP-SAT chip split, fallback bounds
    from test_partition import stack
    g = stack(3, 6, 4, features=2, residual=True)
    spec = {"neuron_memory_bytes": 200, "synapse_memory_bytes": 300, "axon_memory_bytes": 200,
            "mesh": [3, 3], "cores_per_chip": 9}
    P = partition(g, spec)
    docs = [place(P, chips=4, seed=1, budget=BUDGET) for _ in range(2)]
    assert placement_json(docs[0]) == placement_json(docs[1])
    check_doc(docs[0], P)
    assert docs[0]["system"]["chips_used"] == -(-P.n_parts // 9)
    assert docs[0]["search"]["chip_split"]["cpsat"]["status"] in ("OPTIMAL", "FEASIBLE")


def _tiny_chain(spec: dict):
    """encoder, 2 x (S4D in 2 parts, mixing affine), decoder: 8 parts, a chain of hubs."""
    g = BENCH.s4d_stack(2, 4, 2, classes=2)
    return partition(g, spec)


def _brute_force_traffic(prob: Problem) -> float:
    n = prob.n
    perms = np.array(list(itertools.permutations(range(prob.M), n)), dtype=np.int64)
    total = np.zeros(len(perms))
    for (a, b), w in prob.sym.items():
        total += w * prob.cost(perms[:, a], perms[:, b])
    return float(total.min())


@pytest.mark.parametrize("mesh,chips", [([3, 3], 1), ([2, 2], 2)])
def test_lower_bound_never_beats_the_optimum(mesh, chips):
    spec = load_spec({"neuron_memory_bytes": 120, "mesh": mesh, "cores_per_chip": mesh[0] * mesh[1],
                      "chips": chips, "router_load_weight": 0.0})
    P = _tiny_chain(spec.to_json())
    assert P.n_parts == 8 and [p.layer for p in P.parts].count("s4d_0") == 2
    K = -(-P.n_parts // spec.cores_per_chip)
    prob = Problem(P, spec, K)
    lb = lower_bound(prob)
    assert "chain_windows" in lb["detail"]          # the chain-of-hubs bound was computed
    if chips > 1:
        assert lb["components"]["chip_crossings"] > 0
    best = _brute_force_traffic(prob)
    assert float(lb["traffic_lower_bound"]) <= best + 1e-9
    extra = prob.extra * float(lb["components"]["chip_crossings"])
    for key in ("groups", "stars", "chain_windows"):  # each hop bound alone
        assert float(lb["detail"][key]) + extra <= best + 1e-9
    assert float(lb["traffic_lower_bound"]) >= 0.5 * best   # and it means something
    doc = place(P, spec, chips=chips, budget=BUDGET)
    assert float(doc["placements"]["optimized"]["traffic"]) >= best - 1e-9


def test_exact_group_costs_match_brute_force():
    # two hubs at fixed cells, three leaves of two kinds, on a box that holds the optimum
    hubs = [(0, 0), (2, 1)]
    classes = [((3.0, 1.0), 2), ((1.0, 2.0), 1)]
    cells = [(x, y) for x in range(-3, 6) for y in range(-3, 5) if (x, y) not in hubs]
    d = lambda c, h: abs(c[0] - h[0]) + abs(c[1] - h[1])
    cost = {c: [sum(w * d(c, h) for w, h in zip(ws, hubs)) for ws, _ in classes] for c in cells}
    best = min(cost[a][0] + cost[b][0] + cost[c][1]
               for a, b, c in itertools.permutations(cells, 3))
    assert exact_cost(hubs, classes, 1.0) == pytest.approx(best)
    # free hubs: the enumeration over hub offsets
    leaves = [((2.0, 2.0), 3)]
    brute = min(exact_cost([(0, 0), (dx, dy)], leaves, 1.0) + 5 * (abs(dx) + abs(dy))
                for dx in range(-4, 5) for dy in range(-4, 5) if (dx, dy) != (0, 0))
    assert two_hub_min(leaves, 5.0, 1.0) == pytest.approx(brute)
    assert star_cost([4, 1, 1, 1, 1, 1]) == 4 + 1 + 1 + 1 + 2 + 2


def test_network_too_big_for_the_system():
    m = BENCH.MODELS["4chip"]
    P = partition(BENCH.s4d_stack(m["blocks"], m["H"], m["N"]))
    with pytest.raises(ResourceError, match=r"cores: the network needs 434 cores, the system has 128 .*--chips 4"):
        place(P, chips=1)
    with pytest.raises(ResourceError, match=r"neuron memory: part \d+ of layer '\w+' needs \d+ bytes, a core has 1000"):
        place(P, {"neuron_memory_bytes": 1000}, chips=4)


def test_bad_options():
    P = partition(BENCH.s4d_stack(1, 8, 2))
    with pytest.raises(PlacementError, match="budget"):
        place(P, budget=-1)
    with pytest.raises(PlacementError, match="seed"):
        place(P, seed=-2)


def test_summary_and_document_format():
    m = BENCH.MODELS["small"]
    doc = place(partition(BENCH.s4d_stack(m["blocks"], m["H"], m["N"])), budget=BUDGET)
    text = summary(doc)
    assert text.startswith("placement: 32 parts on 1 of 1 chip(s); cores used per chip: 32")
    for k in ("naive", "greedy", "optimized", "lower bound", "gap", "placed in"):
        assert k in text
    assert doc["format"] == "s4dc-placement" and doc["format_version"] == 1
    assert set(doc["placements"]) == {"naive", "greedy", "optimized"}
    for k in ("traffic", "objective", "max_router_load", "message_hops", "chip_crossings", "cores"):
        assert k in doc["placements"]["optimized"]
    # the Lava backend reads layer/chip/core from every partition
    assert all(isinstance(p["chip"], int) and isinstance(p["core"], int) for p in doc["partitions"])
