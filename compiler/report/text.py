"""The report as terminal tables: `format_text(summary) -> str`."""
from __future__ import annotations

from typing import Any

from s4dc.options import OBJECTIVES
from s4dc.report.data import bits_text, exponents_text
from s4dc.report.data import fmt_bytes as _b
from s4dc.report.data import fmt_int as _i
from s4dc.report.data import fmt_si

MESH_TEXT_MAX_CHIPS = 4   # the text mesh is drawn for systems up to this many chips shown


def _p(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def table(head: list[str], rows: list[list[str]], right: set[int] | None = None, indent: str = "  ") -> list[str]:
    """Aligned columns; `right`: indices of right-aligned (numeric) columns."""
    right = right or set()
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return indent + "  ".join(str(c).rjust(w[i]) if i in right else str(c).ljust(w[i])
                                  for i, c in enumerate(cells)).rstrip()
    return [line(head), indent + "  ".join("-" * x for x in w)] + [line(r) for r in rows]


def _opt_p(v: Any) -> str:
    return "" if v is None else _p(v)


def _tradeoff_text(place: dict[str, Any] | None) -> list[str]:
    """The partitioner's choice among the splits it considered, and the sparsity sweep."""
    t = (place or {}).get("tradeoff")
    out: list[str] = []
    if t:
        c = t["candidates"]
        out += ["", f"partition objective {t['objective']} (max latency {t.get('max_latency_us') or '-'} us, max cores "
                    f"{t.get('max_cores') or '-'}): {len(c)} splits considered, costed before placement"]
        rows = []
        for obj, i in sorted(t["best"].items(), key=lambda kv: OBJECTIVES.index(kv[0])):
            rows.append([obj + (" (chosen)" if i == t["chosen"] else ""), _i(c[i]["cores"]),
                         fmt_si(c[i]["latency_per_token_s"], "s"), fmt_si(c[i]["energy_per_token_j"], "J"),
                         str(c[i]["bound_by"])])
        out += table(["best for", "cores", "latency/token", "energy/token", "bound by"], rows, right={1, 2, 3})
    sw = (place or {}).get("sparsity_sweep")
    if sw:
        out += ["", f"modelled energy per token vs activation sparsity (ReLU outputs shifted down; "
                    f"{sw['samples']} calibration sequences):"]
        out += table(["quantile", "sparsity", "sends", "energy/token"],
                     [[f"{r['quantile']:g}", _p(r["mean_sparsity"]), _p(r["mean_activity"]),
                       fmt_si(r["energy_per_token_j"], "J")] for r in sw["sweep"]], right={0, 1, 2, 3})
    return out


def _mesh_text(place: dict[str, Any], view: str) -> list[str]:
    """The cores of the chips shown: the layer number of the part on each core, '.' when free."""
    mx, my = place["mesh"]
    cols = place["chip_grid"][0]
    shown = place["chips_shown"]
    if len(shown) > MESH_TEXT_MAX_CHIPS:
        return []
    n_cols = min(len(shown), cols)
    n_rows = -(-len(shown) // cols)
    at = {(p["x"], p["y"]): place["parts"][p["part"]]["layer_index"] for p in place["placements"][view]["positions"]}
    width = max(2, len(str(max((p["layer_index"] for p in place["parts"]), default=1))))
    lines = []
    last = max((y for (_, y) in at), default=0)
    rows_drawn = n_rows * my if n_rows > 1 else min(my, last + 1)
    for Y in range(rows_drawn):
        if Y and Y % my == 0:
            lines.append("")
        row = []
        for X in range(n_cols * mx):
            chip = (Y // my) * cols + X // mx
            if chip not in shown:
                continue
            if X and X % mx == 0:
                row.append(" |")
            v = at.get((X, Y))
            row.append(("." if v is None else str(v)).rjust(width))
        lines.append("    " + " ".join(row))
    if rows_drawn < n_rows * my:
        lines.append(f"    (rows {rows_drawn}-{n_rows * my - 1} free)")
    return lines


def format_text(s: dict[str, Any]) -> str:
    n = s["network"]
    src = n.get("source") or {}
    out: list[str] = []
    kind = "quantized" if n["quantized"] else "float only"
    out.append(f"s4dc report: {src.get('file', '?')} -> {s['out']}/ ({kind}; graph {n.get('graph')}, "
               f"{n['chip_layers']} on-chip layers, {_i(n['params'])} parameters, s4dc {n.get('s4dc_version')})")
    if s["missing"]:
        out.append("not in this report:")
        out += [f"  - {m}" for m in s["missing"]]

    place = s["placement"]
    if place:
        sysm = place["system"]
        out.append("")
        out.append(f"placement: {sysm['parts']} parts on {sysm['chips_used']} of {sysm['chips']} chip(s) "
                   f"({place['mesh'][0]} x {place['mesh'][1]} mesh, {place['cores_per_chip']} cores per chip); "
                   "traffic = messages per step x route cost")
        rows = []
        for name, pv in place["placements"].items():
            m = pv["metrics"]
            tv = m.get("traffic_vs_naive", 1.0 if name == "naive" else None)
            rows.append([name, _i(m.get("traffic")), "-" if tv is None else f"{tv:.2f}x", _i(m.get("objective")),
                         _i(m.get("max_router_load")), _i(m.get("message_hops")), _i(m.get("chip_crossings"))])
        b = place.get("bound") or {}
        if b:
            comp = b.get("components", {})
            rows.append(["lower bound", _i(b.get("traffic_lower_bound")), "", _i(b.get("lower_bound")),
                         _i(comp.get("max_router_load")), _i(comp.get("message_hops")),
                         _i(comp.get("chip_crossings"))])
        out += table(["placement", "traffic", "vs naive", "objective", "busiest router", "message hops",
                      "chip crossings"], rows, right={1, 2, 3, 4, 5, 6})
        out.append(f"  gap {_p(place.get('gap'))}")
        if "optimized" in place["placements"]:
            mesh = _mesh_text(place, "optimized")
            if mesh:
                out.append("")
                out.append("optimized placement (layer number on each core, . free):")
                out += mesh

    out.append("")
    out.append("layers:")
    placed = place is not None
    head = ["#", "layer", "op", "on", "features", "states", "params"]
    right = {0, 4, 5, 6}
    if placed:
        head += ["cores", "neurons", "synapses", "memory", "fullest", "msgs in/step", "msgs out/step",
                 "synops/step", "sends", "sparsity"]
        right |= set(range(7, 17))
    rows = []
    for r in s["layers"]:
        row = [f"L{r['index']}" if r.get("index") else "", r["name"], r["op"], r["where"], _i(r.get("features")),
               _i(r["states"]) if r.get("states") is not None else "", _i(r.get("params"))]
        if placed:
            on = "cores" in r
            row += ([_i(r["cores"]), _i(r["neurons"]), _i(r["synapses"]), _b(r["memory_bytes"]),
                     _p(r["max_utilization"]), _i(r["messages_in_per_step"]), _i(r["messages_out_per_step"]),
                     _i(r["synops_per_step"]), _opt_p(r.get("activity")), _opt_p(r.get("activation_sparsity"))]
                    if on else [""] * 10)
        rows.append(row)
    out += table(head, rows, right=right)

    c = s["cost"]
    if c:
        views = [v for v in ("naive", "optimized") if v in c["per_placement"]]
        out.append("")
        out.append("estimated per token (one step per token; a model fitted to published Loihi 2 system figures, "
                   "targets/loihi2/cost.py):")
        out.append(f"  bound by {c['per_placement'][views[-1]]['bound_by']}")
        lines = [("time per step", "time_per_step_s", "s"), ("  busiest core", "busiest_core_s", "s"),
                 ("  messages", "messages_s", "s"), ("  barrier", "barrier_s", "s"),
                 ("latency per token", "latency_per_token_s", "s"), ("tokens per second", "tokens_per_s", ""),
                 ("energy per token", "energy_per_token_j", "J"), ("  synaptic ops", "energy_synops_j", "J"),
                 ("  neuron updates", "energy_neurons_j", "J"), ("  messages", "energy_messages_j", "J"),
                 ("  static", "energy_static_j", "J")]
        rows = []
        for label, k, unit in lines:
            rows.append([label] + [fmt_si(c["per_placement"][v][k], unit) if unit
                                   else _i(round(c["per_placement"][v][k])) for v in views])
        out += table([""] + views, rows, right=set(range(1, len(views) + 1)))
        d = c["per_placement"][views[-1]]["depth_steps"]
        out.append(f"  latency = {d} pipeline steps x time per step")
        out.append("  figures:")
        for f in c["figures"]:
            val = f["value"]
            v = (fmt_si(val, f["unit"]) if f["unit"] in ("J", "s", "W")
                 else fmt_si(val, "msg/s") if f["unit"] == "messages/s" else f"{val:g} {f['unit']}")
            tag = "assumed; " if f["assumed"] else ""
            out.append(f"    {f['name']:<22} {v:>12}  {f['what']} [{tag}{f['source']}]")
        out.append("  assumptions:")
        out += [f"    - {a}" for a in c["assumptions"]]
        out.append("  sources:")
        out += [f"    {k}: {v}" for k, v in c.get("sources", {}).items()]

    out += _tradeoff_text(place)

    q = s["quantization"]
    if q:
        out.append("")
        out.append(f"quantization (calibration: {q.get('calibration')}; output rel. RMS error "
                   f"{q.get('output_rel_rms_error')}; {q['saturations']} saturations):")
        rows = []
        for r in q["layers"]:
            rel = r.get("rel_rms_error")
            rows.append([r["name"], str(r.get("op")), bits_text(r), _i(r.get("exp_out")), exponents_text(r),
                         _i(r.get("saturations")), "-" if rel is None else f"{rel:.2e}"])
        out += table(["layer", "op", "bits w/a/b/c/s/m", "exp", "exponents, shifts", "saturations", "rel error"],
                     rows, right={3, 5, 6})

    if s["realize"]:
        out.append("")
        out.append("kernels realized as state spaces:")
        out += table(["layer", "modes", "kernel taps", "max rel error", "max |pole|"],
                     [[r["layer"], _i(r.get("modes")), _i(r.get("kernel_taps")),
                       f"{r.get('max_rel_error', 0):.2e}", f"{r.get('max_abs_pole', 0):.6f}"] for r in s["realize"]],
                     right={1, 2, 3, 4})

    out.append("")
    out.append(f"passes ({s['compile_seconds']:.2f} s):")
    rows = [[str(p["index"]), str(p["pass"]), "-" if p["seconds"] is None else f"{p['seconds'] * 1e3:,.1f} ms",
             p["summary"] if len(p["summary"]) <= 100 else p["summary"][:97] + "..."] for p in s["passes"]]
    out += table(["#", "pass", "time", "what changed"], rows, right={0, 2})
    return "\n".join(out)
