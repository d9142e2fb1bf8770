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

This module is the entry point; the stages live in `s4dc.passes.placement`
(problem, heuristics, chip_split, anneal, the bound modules, document).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from s4dc.passes.partition import Partitioning
from s4dc.passes.placement.anneal import anneal
from s4dc.passes.placement.chip_split import chip_split_cpsat, chip_split_dp
from s4dc.passes.placement.document import (PLACEMENT_FORMAT, PLACEMENT_VERSION, document, placement_json,
                                            strip_timing, summary)
from s4dc.passes.placement.heuristics import greedy, greedy_best, naive
from s4dc.passes.placement.lower_bound import lower_bound
from s4dc.passes.placement.problem import Problem, check_fit, json_number, objective_of
from s4dc.targets.loihi2.hardware import HardwareSpec, PlacementError, ResourceError, load_spec

DEFAULT_BUDGET = 30.0
MAX_BUDGET = 3600.0
# Annealing moves per work unit (~1 s of CPU on the development machine).
MOVES_PER_UNIT = 700_000
# CP-SAT's deterministic time for the chip split: this share of the budget, at most the cap.
CPSAT_SHARE = 0.05
CPSAT_MAX_DTIME = 5.0

Progress = Callable[[str], None]


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
    check_fit(partitioning, spec)
    K = max(1, math.ceil(n / spec.cores_per_chip))
    prob = Problem(partitioning, spec, K)
    timing: dict[str, float] = {}

    t = time.perf_counter()
    search: dict[str, Any] = {"seed": seed, "budget": json_number(budget)}
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
        opt = min((sa, start, cand["greedy"]), key=lambda pos: objective_of(prob.evaluate(pos)))
    timing["optimize_s"] = time.perf_counter() - t
    evals = {k: prob.evaluate(v) for k, v in cand.items()}
    cand["optimized"], evals["optimized"] = opt, prob.evaluate(opt)

    best = objective_of(evals["optimized"])
    gap = (best - float(lb["lower_bound"])) / best if best > 0 else 0.0
    timing["place_s"] = time.perf_counter() - t_all
    return document(prob, cand, evals, lb, gap, search, {k: round(v, 3) for k, v in timing.items()})


# The stages, importable from here as before the split into s4dc.passes.placement.
__all__ = ["DEFAULT_BUDGET", "PLACEMENT_FORMAT", "PLACEMENT_VERSION", "anneal", "chip_split_cpsat", "chip_split_dp",
           "greedy", "greedy_best", "lower_bound", "naive", "place", "placement_json", "strip_timing", "summary"]
