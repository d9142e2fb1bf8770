"""The placement.json document (docs/placement.md) and the CLI's summary of it."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
from s4dc.passes.placement.problem import Problem, json_number

PLACEMENT_FORMAT = "s4dc-placement"
PLACEMENT_VERSION = 1


def document(prob: Problem, cand: dict[str, np.ndarray], evals: dict[str, dict], lb: dict, gap: float,
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
        placements[k]["traffic_vs_naive"] = json_number(round(float(evals[k]["traffic"]) / naive_t, 4)) if naive_t else 1
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
        "gap": json_number(round(gap, 6)),
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
