"""The placement.json document (docs/placement.md) and the CLI's summary of it."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
from s4dc.passes.placement.problem import Problem, json_number
from s4dc.targets.loihi2.hardware import HardwareSpec

PLACEMENT_FORMAT = "s4dc-placement"
PLACEMENT_VERSION = 1


def _positions(spec: HardwareSpec, cores: np.ndarray) -> dict[str, list[int]]:
    """Each part's chip and mesh position within it, per part id (the
    geometry written out, so that readers need not re-derive it)."""
    chip_core = [divmod(int(g), spec.cores_per_chip) for g in cores.tolist()]
    xy = [spec.core_xy(core) for _, core in chip_core]
    return {"chip": [c for c, _ in chip_core], "x": [x for x, _ in xy], "y": [y for _, y in xy]}


def document(prob: Problem, cand: dict[str, np.ndarray], evals: dict[str, dict], lb: dict, gap: float,
             search: dict, timing: dict) -> dict[str, Any]:
    """The placement.json document of the candidates `cand` (global core per
    part id) with their evaluations; partitions carry the optimized one."""
    spec, P = prob.spec, prob.P
    cpc = spec.cores_per_chip
    opt = cand["optimized"]
    at = _positions(spec, opt)
    parts = []
    for p in P.parts:
        d = p.to_json()
        d.update({"chip": at["chip"][p.id], "core": int(opt[p.id]) % cpc, "x": at["x"][p.id], "y": at["y"][p.id]})
        parts.append(d)
    placements = {}
    for k in ("naive", "greedy", "optimized"):
        placements[k] = {**evals[k], "cores": [int(c) for c in cand[k]], **_positions(spec, cand[k])}
    naive_t = float(evals["naive"]["traffic"])
    for k in ("greedy", "optimized"):
        ratio = float(evals[k]["traffic"]) / naive_t if naive_t else None
        placements[k]["traffic_vs_naive"] = json_number(round(ratio, 4)) if ratio is not None else 1
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
    """The document without its (non-deterministic) timing."""
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
