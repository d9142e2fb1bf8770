"""Placement of a partitioning on Loihi 2 cores, one concept per module; the
entry point is `s4dc.passes.place` (docs/placement.md).

- problem: parts, message weights, cores, route costs, evaluation
- heuristics: naive (Lava's first-come order) and greedy placements
- chip_split: the chip-level split (dynamic programming, CP-SAT)
- anneal: simulated annealing on traffic
- unbounded_mesh, chain_bound, crossing_bound, lower_bound: the lower bound
- document: the placement.json document and the CLI summary
"""
