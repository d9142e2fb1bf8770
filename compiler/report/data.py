"""Read a compiled network folder (OUT/) and gather the report's numbers:
`summary(out_dir) -> dict`, JSON-serializable. Only the files in OUT/ are
read (manifest.json, graph.json, params.npz headers, placement.json,
timings.json); nothing is recompiled or re-run."""
from __future__ import annotations

import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable

from s4dc.errors import NetworkFormatError
from s4dc.report import cost

REPORT_FORMAT = "s4dc-report"
REPORT_FORMAT_VERSION = 1
NET_FORMAT = "s4dc-net"
NET_FORMAT_VERSION = 1
MAX_CHIPS_SHOWN = 16   # more configured chips than this: only the chips in use are drawn
HOST_OPS = {"input", "readout", "output"}
PLACEMENT_NAMES = ("naive", "greedy", "optimized")


def _read_json(path: Path, what: str, required: bool = True) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise NetworkFormatError(f"{path.parent}: not a compiled s4dc network ({path.name} is missing)") from None
        return None
    except (OSError, ValueError) as e:
        raise NetworkFormatError(f"{path}: unreadable {what} ({e})") from None


def _param_sizes(path: Path) -> dict[str, int]:
    """Element count per `LAYER/PARAM` key of params.npz, from the array headers only."""
    import numpy as np
    from numpy.lib import format as npf

    sizes: dict[str, int] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not name.endswith(".npy"):
                    continue
                with z.open(name) as f:
                    version = npf.read_magic(f)
                    shape, _, _ = (npf.read_array_header_1_0(f) if version == (1, 0)
                                   else npf.read_array_header_2_0(f))
                sizes[name[:-4]] = int(np.prod(shape, dtype=np.int64))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise NetworkFormatError(f"{path}: unreadable parameters ({e})") from None
    return sizes


def _timings(t: dict[str, Any]) -> tuple[dict[int, float], dict[str, float]]:
    per_pass: dict[int, float] = {}
    other: dict[str, float] = {}
    for k, v in t.items():
        m = re.match(r"^(\d+)_(.+)$", k)
        if m and isinstance(v, (int, float)):
            per_pass[int(m.group(1))] = float(v)
        elif isinstance(v, (int, float)):
            other[k] = float(v)
    return per_pass, other


def _short(v: Any, depth: int = 0) -> str:
    """A pass's changes as one short line."""
    if isinstance(v, dict):
        if not v:
            return "no change"
        if depth >= 1 and len(v) > 4:
            return f"{len(v)} entries"
        return ", ".join(f"{k}={_short(x, depth + 1)}" for k, x in v.items())
    if isinstance(v, list):
        if len(v) > 4:
            return f"[{', '.join(str(x) for x in v[:3])}, ... ({len(v)})]"
        return "[" + ", ".join(str(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _pass_text(name: str, changes: dict[str, Any]) -> str:
    ch = dict(changes)
    if name == "quantize" and "layers" in ch:
        layers = ch.pop("layers")
        ch = {"layers": len(layers), **ch}
    if name == "realize" and "realized" in ch:
        r = ch.pop("realized")
        if r:
            ch = {"layers": len(r), "modes": sum(int(x.get("modes", 0)) for x in r.values()),
                  "max_rel_error": max(float(x.get("max_rel_error", 0)) for x in r.values()),
                  "max_abs_pole": max(float(x.get("max_abs_pole", 0)) for x in r.values()), **ch}
    return _short(ch)


def _depths(layers: list[dict[str, Any]]) -> dict[str, int]:
    """Synapse stages from the input to each layer's output (host layers add none)."""
    return cost.depths((L["name"], L["op"], L.get("inputs", []), L.get("output", L["name"])) for L in layers)


def _mesh_xy(g: int, spec: dict[str, Any], grid_cols: int) -> tuple[int, int, int]:
    cpc = int(spec["cores_per_chip"])
    mx, my = int(spec["mesh"][0]), int(spec["mesh"][1])
    chip, local = divmod(int(g), cpc)
    gx, gy = chip % grid_cols, chip // grid_cols
    return gx * mx + local % mx, gy * my + local // mx, chip


def _positions(pl: dict[str, Any], spec: dict[str, Any], grid_cols: int) -> list[tuple[int, int, int]]:
    """Each part's (x, y) on the system's mesh of chips and its chip, from the
    chip and in-chip x, y placement.json gives (files before those fields
    derive them from the core numbers)."""
    if not all(k in pl for k in ("chip", "x", "y")):
        return [_mesh_xy(int(g), spec, grid_cols) for g in pl["cores"]]
    mx, my = int(spec["mesh"][0]), int(spec["mesh"][1])
    return [((int(c) % grid_cols) * mx + int(x), (int(c) // grid_cols) * my + int(y), int(c))
            for c, x, y in zip(pl["chip"], pl["x"], pl["y"])]


def _route(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """X-Y dimension-order route: along x in the source row, then along y in
    the destination column; the links as (from, to) mesh points."""
    (x0, y0), (x1, y1) = a, b
    steps = []
    sx = 1 if x1 > x0 else -1
    for x in range(x0, x1, sx):
        steps.append(((x, y0), (x + sx, y0)))
    sy = 1 if y1 > y0 else -1
    for y in range(y0, y1, sy):
        steps.append(((x1, y), (x1, y + sy)))
    return steps


def owner(part_layer: str, layers: Iterable[str]) -> tuple[str, str | None]:
    """The graph layer a part belongs to and its stage: a layer that the
    partitioner maps as several stages names its parts `LAYER/STAGE` (a MIMO
    layer's mode neurons: `LAYER/modes`); the others name the layer itself."""
    if part_layer in layers:
        return part_layer, None
    base, _, stage = part_layer.rpartition("/")
    if base and base in layers:
        return base, stage
    return part_layer, None


# The widths the quantization table shows, w/a/b/c/state/message. A MIMO
# layer's B and C are synapse weights (docs/fixed_point.md, `qmimo`): its b
# and c columns are the weight width, not the S4D coefficient widths it
# does not use.
BIT_COLUMNS = ("weight", "a", "b", "c", "state", "message")
BIT_SOURCES = {"qmimo": {"b": "weight", "c": "weight"}}
# Shifts of an integer op the report reads from graph.json beside the
# quantization record's exponents (label = attribute name).
SHIFTS = {"qmimo": ("x_shift", "c_shift", "d_shift")}
EXPONENT_LABELS = (("weight_exp", "w"), ("shift", "shift"), ("a_frac", "a_frac"), ("state_exp", "state"),
                   ("x_shift", "x_shift"), ("c_shift", "c_shift"), ("d_shift", "d_shift"))


def bits_used(op: str | None, bits: dict[str, int] | None) -> list[int | None] | None:
    """The BIT_COLUMNS widths of a quantized layer, or None (no widths: the input)."""
    if not bits:
        return None
    src = BIT_SOURCES.get(str(op), {})
    return [bits.get(src.get(k, k)) for k in BIT_COLUMNS]


def exponents_text(r: dict[str, Any]) -> str:
    """A quantization row's exponents and shifts, one short line."""
    return ", ".join(f"{lab} {r[k]}" for k, lab in EXPONENT_LABELS if r.get(k) is not None)


def bits_text(r: dict[str, Any]) -> str:
    b = r.get("bits_used")
    return "/".join("-" if v is None else str(v) for v in b) if b else "-"


def _states(L: dict[str, Any], psizes: dict[str, int]) -> int | None:
    """A state-space layer's complex states, from its parameters' sizes: an
    S4D layer's H x N (a_re (H, N), or a diagonal A), a MIMO layer's P shared
    modes (a_re (P,), or diagonal A (P,)); None for other layers."""
    name = L["name"]
    if f"{name}/a_re" in psizes:
        return psizes[f"{name}/a_re"]
    if (L.get("attrs") or {}).get("form") == "diagonal" and f"{name}/A" in psizes:
        return psizes[f"{name}/A"]
    return None


def _binding(stages: list[dict[str, Any]], name: str) -> str | None:
    """What set a layer's split; per stage where its stages' differ."""
    found = [(x["layer"], x.get("binding")) for x in stages]
    if len({b for _, b in found}) <= 1:
        return found[0][1] if found else None
    return "; ".join(f"{'units' if n == name else n.rpartition('/')[2]}: {b}" for n, b in found)


def _placement(doc: dict[str, Any], layer_index: dict[str, int], depth_steps: int) -> dict[str, Any]:
    spec = doc["spec"]
    system = doc["system"]
    grid_cols, grid_rows = (int(v) for v in system["chip_grid"])
    chips, chips_used = int(system["chips"]), int(system["chips_used"])
    cpc = int(spec["cores_per_chip"])
    mx, my = int(spec["mesh"][0]), int(spec["mesh"][1])
    limits = {"neurons": int(spec["neurons_per_core"]), "memory": int(spec["memory_bytes_per_core"]),
              "neuron_memory": int(spec["neuron_memory_bytes"]), "synapse_memory": int(spec["synapse_memory_bytes"]),
              "axon_memory": int(spec["axon_memory_bytes"])}
    parts = []
    for p in doc["partitions"]:
        mem = p.get("memory", {})
        util = {"neurons": p["neurons"] / limits["neurons"],
                "memory": p["memory_bytes"] / limits["memory"],
                "neuron_memory": mem.get("neuron", 0) / limits["neuron_memory"],
                "synapse_memory": mem.get("synapse", 0) / limits["synapse_memory"],
                "axon_memory": mem.get("axon", 0) / limits["axon_memory"]}
        binding = max(("neurons", "neuron_memory", "synapse_memory", "axon_memory"), key=lambda k: util[k])
        util["max"] = util[binding]
        units = int(p["neurons"]) - int(p.get("state_neurons", 0))
        # Each S4D state sends to its channel unit through one synapse; when the
        # unit shares the core (no split, or the unit's chunk) that op is internal.
        internal = int(p.get("state_neurons", 0)) if units > 0 else 0  # state neurons: S4D parts only
        of, stage = owner(p["layer"], layer_index)
        parts.append({"id": p["id"], "layer": p["layer"], "of": of, "stage": stage,
                      "layer_index": layer_index.get(of, 0), "op": p["op"], "channels": p.get("channels"), "state_range": p.get("state_range"),
                      "neurons": p["neurons"], "state_neurons": p.get("state_neurons", 0),
                      "synapses": p["synapses"], "memory_bytes": p["memory_bytes"], "memory": mem,
                      "synops_per_step": p.get("synops_per_step", 0), "internal_synops_per_step": internal,
                      "synops": float(p.get("synops_per_step", 0)) + internal,
                      "utilization": util, "binding": binding})
    edges = [{"src": e["src"], "dst": e["dst"], "messages_per_step": e["messages_per_step"]} for e in doc["edges"]]

    # Chips drawn: all configured ones when few, else those in use.
    shown = list(range(chips)) if chips <= MAX_CHIPS_SHOWN else list(range(chips_used))
    grid_diam = 0
    if chips_used > 1:
        xy = [(c % grid_cols, c // grid_cols) for c in range(chips_used)]
        grid_diam = (max(x for x, _ in xy) - min(x for x, _ in xy)) + (max(y for _, y in xy) - min(y for _, y in xy))

    views = {}
    for name in PLACEMENT_NAMES:
        pl = doc["placements"].get(name)
        if pl is None:
            continue
        cores = [int(c) for c in pl["cores"]]
        pos = _positions(pl, spec, grid_cols)
        links: dict[tuple[tuple[int, int], tuple[int, int]], list[float]] = {}
        routes = []
        for e in edges:
            a, b = pos[e["src"]], pos[e["dst"]]
            m = float(e["messages_per_step"])
            steps = _route((a[0], a[1]), (b[0], b[1]))
            cx = cy = 0
            for s, t in steps:
                key = (min(s, t), max(s, t))
                rec = links.setdefault(key, [0.0, 0.0])
                rec[0 if s < t else 1] += m
                if s[0] // mx != t[0] // mx:
                    cx += 1
                if s[1] // my != t[1] // my:
                    cy += 1
            routes.append({"src": e["src"], "dst": e["dst"], "messages": m,
                           "x_hops": abs(a[0] - b[0]), "y_hops": abs(a[1] - b[1]), "chip_x": cx, "chip_y": cy})
        link_list = [{"a": list(k[0]), "b": list(k[1]), "messages_per_step": _num(v[0] + v[1]),
                      "forward": _num(v[0]), "backward": _num(v[1]),
                      "chip_link": (k[0][0] // mx != k[1][0] // mx) or (k[0][1] // my != k[1][1] // my)}
                     for k, v in sorted(links.items())]
        est = cost.estimate(parts, routes, spec, float(pl.get("max_router_load", 0)), depth_steps,
                            chips_used, grid_diam)
        views[name] = {
            "metrics": {k: pl.get(k) for k in ("traffic", "objective", "max_router_load", "message_hops",
                                               "chip_crossings", "traffic_vs_naive") if k in pl},
            "cores": cores,
            "positions": [{"part": i, "chip": c, "x": x, "y": y} for i, (x, y, c) in enumerate(pos)],
            "links": link_list,
            "max_link_messages": max((l["messages_per_step"] for l in link_list), default=0),
            "cores_used_per_chip": doc.get("cores_used_per_chip", {}).get(name, {}),
            "cost": est,
        }
    return {
        "system": system, "spec": spec, "limits": limits,
        "chips_shown": shown, "chip_grid": [grid_cols, grid_rows], "chip_grid_diameter": grid_diam,
        "mesh": [mx, my], "cores_per_chip": cpc,
        "parts": parts, "edges": edges, "layers": doc.get("layers", []),
        "placements": views,
        "bound": doc.get("bound"), "gap": doc.get("gap"), "search": doc.get("search"),
        "tradeoff": _tradeoff(doc.get("partition_search"), views.get("optimized", {}).get("cost")),
        "sparsity_sweep": doc.get("activity_measured"),
    }


def _tradeoff(search: dict[str, Any] | None, placed: dict[str, Any] | None) -> dict[str, Any] | None:
    """The partitioner's splits (costed before placement) and the chosen one
    as placed; None for a placement.json written before partition objectives."""
    if not search or not search.get("candidates"):
        return None
    out = dict(search)
    if placed:
        out["chosen_placed"] = {k: placed[k] for k in ("latency_per_token_s", "energy_per_token_j",
                                                        "time_per_step_s", "cores")}
    return out


def _num(v: float) -> float | int:
    f = float(v)
    return int(f) if f.is_integer() else round(f, 6)


def summary(out_dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-ready data."""
    out = Path(out_dir)
    if not out.exists():
        raise NetworkFormatError(f"{out}: no such folder (expected a network compiled with `s4dc MODEL -o {out}`)")
    if not out.is_dir():
        raise NetworkFormatError(f"{out}: not a folder (expected a network compiled with `s4dc MODEL -o OUT`)")
    manifest = _read_json(out / "manifest.json", "manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != NET_FORMAT \
            or manifest.get("format_version") != NET_FORMAT_VERSION:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        ver = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise NetworkFormatError(f"{out}/manifest.json: format {fmt!r} version {ver!r}; "
                                 f"this report reads {NET_FORMAT} version {NET_FORMAT_VERSION}")
    files = manifest.get("files", {}) or {}
    try:
        return _summary(out, manifest, files)
    except NetworkFormatError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise NetworkFormatError(f"{out}: inconsistent network files ({type(e).__name__}: {e})") from None


def _summary(out: Path, manifest: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    graph = _read_json(out / files.get("graph", "graph.json"), "graph")
    timings_raw = _read_json(out / files.get("timings", "timings.json"), "timings", required=False)
    missing: list[str] = []
    if timings_raw is None:
        missing.append("timings.json: pass times unknown")
        timings_raw = {}
    options = manifest.get("options", {}) or {}
    float_only = bool(options.get("float_only"))
    placement_doc = None
    pfile = files.get("placement")
    if pfile:
        placement_doc = _read_json(out / pfile, "placement")
        if placement_doc.get("format") != "s4dc-placement":
            raise NetworkFormatError(f"{out / pfile}: format {placement_doc.get('format')!r}, "
                                     "expected 's4dc-placement'")
    elif float_only:
        missing.append("placement: compiled with --float; partitioning and placement need a quantized network "
                       "(compile without --float)")
    elif options.get("place") is False:
        missing.append("placement: compiled with --no-place")
    else:
        missing.append("placement: no placement.json in this folder")

    layers = graph["layers"]
    tensors = {t["name"]: t for t in graph.get("tensors", [])}
    psizes = _param_sizes(out / files.get("params", "params.npz"))
    depth = _depths(layers)
    quant_rec = next((r for r in manifest.get("passes", []) if r.get("pass") == "quantize"), None)
    quantized = quant_rec is not None or any(L["op"].startswith("q") for L in layers)
    if not quantized:
        missing.append("quantization: compiled with --float; no integer formats, saturation counts or error "
                       "against float" if float_only else "quantization: no quantize pass in the pass log")

    # Chip-side layers end at the first readout; what follows runs on the host.
    host_after = set()
    seen_readout = False
    for L in layers:
        if L["op"] == "readout":
            seen_readout = True
        if seen_readout and L["op"] not in ("readout",):
            host_after.add(L["name"])
    chip_layers = [L["name"] for L in layers if L["op"] not in HOST_OPS and L["name"] not in host_after]
    layer_index = {n: i + 1 for i, n in enumerate(chip_layers)}
    depth_steps = max((depth[n] for n in chip_layers), default=0)

    place = _placement(placement_doc, layer_index, depth_steps) if placement_doc else None

    rows = []
    for L in layers:
        t = tensors.get(L.get("output", L["name"]), {})
        row: dict[str, Any] = {
            "name": L["name"], "op": L["op"], "index": layer_index.get(L["name"]),
            "inputs": list(L.get("inputs", [])), "features": t.get("features"), "sequence": t.get("sequence"),
            "fmt": t.get("fmt"), "params": sum(psizes.get(f"{L['name']}/{p}", 0) for p in L.get("params", [])),
            "source": L.get("source", ""),
            "where": "chip" if L["name"] in layer_index else "host",
            "latency_steps": depth.get(L["name"], 0) if L["name"] in layer_index else None,
        }
        states = _states(L, psizes)
        if states is not None:
            row["states"] = states
        if place is not None and L["name"] in layer_index:
            # every stage of the layer (a MIMO layer: its `/modes` parts too)
            mine = [p for p in place["parts"] if p["of"] == L["name"]]
            ids = {p["id"] for p in mine}
            stages = [x for x in place["layers"] if owner(x.get("layer", ""), layer_index)[0] == L["name"]]
            lay = next((x for x in stages if x.get("layer") == L["name"]), {})
            row.update({
                "cores": len(mine),
                "neurons": sum(p["neurons"] for p in mine),
                "state_neurons": sum(p["state_neurons"] for p in mine),
                "synapses": sum(p["synapses"] for p in mine),
                "memory_bytes": sum(p["memory_bytes"] for p in mine),
                "memory": {k: sum(p["memory"].get(k, 0) for p in mine) for k in ("neuron", "synapse", "axon")},
                "messages_out_per_step": _num(sum(e["messages_per_step"] for e in place["edges"]
                                                  if e["src"] in ids and e["dst"] not in ids)),
                "messages_in_per_step": _num(sum(e["messages_per_step"] for e in place["edges"]
                                                 if e["dst"] in ids and e["src"] not in ids)),
                # between the layer's own parts (MIMO modes to output units, S4D state chunks to units)
                "messages_internal_per_step": _num(sum(e["messages_per_step"] for e in place["edges"]
                                                       if e["src"] in ids and e["dst"] in ids)),
                "synops_per_step": _num(sum(p["synops"] for p in mine)),
                "max_utilization": max((p["utilization"]["max"] for p in mine), default=0.0),
                "binding": _binding(stages, L["name"]), "activity": lay.get("activity"),
                "activation_sparsity": lay.get("activation_sparsity"),
                "units": lay.get("units"), "states_per_channel": lay.get("states_per_channel"),
                "stages": [{"stage": owner(x["layer"], layer_index)[1] or "units", "layer": x["layer"],
                            "parts": x.get("parts"), "units": x.get("units"), "binding": x.get("binding"),
                            "activity": x.get("activity")} for x in stages],
            })
        rows.append(row)

    quant = None
    if quant_rec is not None:
        ch = quant_rec.get("changes", {})
        qrows = []
        by_name = {L["name"]: L for L in layers}
        for name, e in ch.get("layers", {}).items():
            attrs = (by_name.get(name) or {}).get("attrs") or {}
            qrows.append({"name": name, "op": e.get("op"), "bits": e.get("bits"),
                          "bits_used": bits_used(e.get("op"), e.get("bits")),
                          "exp_out": e.get("exp_out"), "state_exp": e.get("state_exp"),
                          "weight_exp": e.get("weight_exp"), "shift": e.get("shift"), "a_frac": e.get("a_frac"),
                          **{k: attrs.get(k) for k in SHIFTS.get(str(e.get("op")), ())},
                          "modes": e.get("modes"),
                          "saturations": e.get("saturations"), "rel_rms_error": e.get("rel_rms_error"),
                          "max_abs_eigenvalue": e.get("max_abs_eigenvalue")})
        order = {L["name"]: i for i, L in enumerate(layers)}
        qrows.sort(key=lambda r: order.get(r["name"], len(order)))
        quant = {"calibration": manifest.get("calibration"), "margin": ch.get("margin"),
                 "output_rel_rms_error": ch.get("output_rel_rms_error"),
                 "saturations": sum(int(r["saturations"] or 0) for r in qrows), "layers": qrows}

    realize = []
    for rec in manifest.get("passes", []):
        if rec.get("pass") == "realize":
            for name, r in (rec.get("changes", {}).get("realized") or {}).items():
                realize.append({"layer": name, **r})

    per_pass, other_t = _timings(timings_raw)
    passes = []
    for i, rec in enumerate(manifest.get("passes", [])):
        passes.append({"index": i, "pass": rec.get("pass"), "seconds": per_pass.get(i),
                       "changes": rec.get("changes", {}), "summary": _pass_text(rec.get("pass"),
                                                                                rec.get("changes", {}))})
    total_s = sum(v for v in per_pass.values())

    if place is None:
        missing.append("cost estimate: needs the placement (per-core work and routes)")

    src = manifest.get("source", {})
    return {
        "format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION,
        "out": str(out),
        "network": {"graph": graph.get("name"), "s4dc_version": manifest.get("s4dc_version"),
                    "source": src, "io": manifest.get("io"), "options": options, "flow": manifest.get("flow"),
                    "quantized": quantized, "placed": place is not None, "float_only": float_only,
                    "time_steps": (graph.get("meta") or {}).get("time_steps"),
                    "chip_layers": len(chip_layers), "depth_steps": depth_steps,
                    "params": sum(psizes.values())},
        "missing": missing,
        "layers": rows,
        "quantization": quant,
        "realize": realize,
        "passes": passes,
        "compile_seconds": total_s,
        "other_timings": other_t,
        "placement": place,
        "cost": ({"figures": cost.figures(place["spec"]), "assumptions": list(cost.ASSUMPTIONS),
                  "sources": dict(cost.SOURCES),
                  "per_placement": {k: v["cost"] for k, v in place["placements"].items()}}
                 if place is not None else None),
    }


def fmt_si(v: float | None, unit: str, digits: int = 3, micro: str = "u") -> str:
    """1.23e-6 s -> '1.23 us' ('1.23 \u00b5s' with micro='\u00b5')."""
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "-"
    if v == 0:
        return f"0 {unit}"
    prefixes = [(1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, micro), (1e-9, "n"), (1e-12, "p")]
    for scale, p in prefixes:
        if abs(v) >= scale:
            return f"{v / scale:.{digits}g} {p}{unit}"
    return f"{v / 1e-15:.{digits}g} f{unit}"


def fmt_int(v: Any) -> str:
    """A count for tables: thousands separators, '-' for missing."""
    if v is None:
        return "-"
    f = float(v)
    return f"{int(f):,}" if f.is_integer() else f"{f:,.2f}"


def fmt_bytes(v: Any) -> str:
    """A memory size for tables: B, KiB or MiB, '-' for missing."""
    if v is None:
        return "-"
    v = float(v)
    if v < 1024:
        return f"{int(v)} B"
    return f"{v / 1024:.1f} KiB" if v < 1024 ** 2 else f"{v / 1024 ** 2:.2f} MiB"
