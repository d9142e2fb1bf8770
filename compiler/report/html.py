"""OUT/report.html: one self-contained page (inline CSS, SVG and JS; no
external URL) built from `summary(out_dir)`."""
from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from s4dc.report.data import bits_text, exponents_text
from s4dc.report.data import fmt_bytes as _bytes
from s4dc.report.data import fmt_int as _int
from s4dc.report.data import fmt_si as _fmt_si
from s4dc.report.figures import CSS as FIG_CSS
from s4dc.report.figures import tradeoff_section

# Sequential colour scales (ColorBrewer YlGnBu for core utilization, YlOrRd for links).
UTIL_SCALE = ["#f7fcf0", "#ccebc5", "#7bccc4", "#2b8cbe", "#084081"]
LINK_SCALE = ["#fed976", "#feb24c", "#fd8d3c", "#e31a1c", "#800026"]
LAYER_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
                "#9c755f", "#bab0ac"]
METRICS = [("max", "binding limit (max of neurons and each memory share)"), ("neurons", "neurons"),
           ("memory", "memory (of the core's total)")]
MESH_WIDTH = 560   # px per placement drawing at most


def fmt_si(v: Any, unit: str) -> str:
    return _fmt_si(v, unit, micro="\u00b5")


def _hex(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def scale(anchors: list[str], t: float) -> str:
    t = 0.0 if math.isnan(t) else min(1.0, max(0.0, t))
    pos = t * (len(anchors) - 1)
    i = min(int(pos), len(anchors) - 2)
    f = pos - i
    a, b = _hex(anchors[i]), _hex(anchors[i + 1])
    r, g, b_ = (round(x + (y - x) * f) for x, y in zip(a, b))
    return f"#{r:02x}{g:02x}{b_:02x}"


def _dark(color: str) -> bool:
    r, g, b = _hex(color)
    return 0.299 * r + 0.587 * g + 0.114 * b < 140


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def _sci(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2e}"


def _attr(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return escape(repr(v))
    return escape(str(v))


def td(text: str, k: str | None = None, v: Any = None, cls: str = "", title: str | None = None) -> str:
    a = ""
    if k is not None:
        a += f' data-k="{escape(k)}"'
    if v is not None:
        a += f' data-v="{_attr(v)}"'
    if cls:
        a += f' class="{cls}"'
    if title:
        a += f' title="{escape(title)}"'
    return f"<td{a}>{text}</td>"


def _table(head: list[tuple[str, str]], rows: list[str], cls: str = "", tid: str = "") -> str:
    """head: (label, 'n' for numeric / '' for text)."""
    th = "".join(f'<th class="{"n" if kind == "n" else ""}">{escape(label)}</th>' for label, kind in head)
    idattr = f' id="{tid}"' if tid else ""
    return (f'<div class="tw"><table class="sortable {cls}"{idattr}><thead><tr>{th}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


# ---------------------------------------------------------------------------
def mesh_svg(place: dict[str, Any], view: str, vmax_link: float) -> str:
    mx, my = place["mesh"]
    cpc = place["cores_per_chip"]
    grid_cols = place["chip_grid"][0]
    shown = place["chips_shown"]
    n_cols = min(len(shown), grid_cols)
    n_rows = math.ceil(len(shown) / grid_cols)
    W, H = n_cols * mx, n_rows * my
    pitch = max(12.0, min(40.0, MESH_WIDTH / W))
    cell = round(pitch * 0.72, 1)
    chip_gap = round(pitch * 0.7, 1)
    pad = round(pitch * 0.25 + 3, 1)
    top = pad + 14.0

    def px(X: int) -> float:
        return round(pad + X * pitch + (X // mx) * chip_gap, 1)

    def py(Y: int) -> float:
        return round(top + Y * pitch + (Y // my) * (chip_gap + 16), 1)

    width = px(W - 1) + cell + pad
    height = py(H - 1) + cell + pad
    v = place["placements"][view]
    parts = place["parts"]
    at = {}
    for pos in v["positions"]:
        at[(pos["x"], pos["y"])] = pos["part"]
    out = [(f'<svg class="mesh" data-placement="{view}" data-metric="max" viewBox="0 0 {width:.1f} {height:.1f}" '
           f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{view} placement">')]
    # chip frames
    for c in shown:
        gx, gy = c % grid_cols, c // grid_cols
        x0, y0 = px(gx * mx) - pitch * 0.2, py(gy * my) - pitch * 0.2
        x1, y1 = px(gx * mx + mx - 1) + cell + pitch * 0.2, py(gy * my + my - 1) + cell + pitch * 0.2
        used = v["cores_used_per_chip"].get(str(c), 0)
        out.append(f'<rect class="chip" x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
                   f'rx="4"/><text class="chiplabel" x="{x0 + 1:.1f}" y="{y0 - 5:.1f}">chip {c} · '
                   f'{used} of {cpc} cores</text>')
    fs = round(cell * 0.36, 1)
    for c in shown:
        gx, gy = c % grid_cols, c // grid_cols
        for local in range(cpc):
            X, Y = gx * mx + local % mx, gy * my + local // mx
            g = c * cpc + local
            x, y = px(X), py(Y)
            pid = at.get((X, Y))
            if pid is None:
                out.append(f'<rect class="core free" data-core="{g}" data-chip="{c}" x="{x}" y="{y}" '
                           f'width="{cell}" height="{cell}"/>')
                continue
            p = parts[pid]
            u = p["utilization"]
            cols = {m: scale(UTIL_SCALE, u[m]) for m, _ in METRICS}
            style = ";".join(f"--{m}:{cols[m]};--t{m}:{'#fff' if _dark(cols[m]) else '#111'}" for m, _ in METRICS)
            lc = LAYER_COLORS[(p["layer_index"] - 1) % len(LAYER_COLORS)]
            ch = p.get("channels") or [0, 0]
            sr = f", states {p['state_range'][0]}-{p['state_range'][1]}" if p.get("state_range") else ""
            stage = f" {p['stage']}" if p.get("stage") else ""   # a MIMO layer's mode neurons: "modes"
            what = "modes" if p.get("stage") == "modes" else "units"
            mem = p["memory"]
            lim = place["limits"]
            tip = (f"core {local} of chip {c} (x {local % mx}, y {local // mx})\n"
                   f"part {pid}: L{p['layer_index']} {p['of']}{stage} ({p['op']}), {what} {ch[0]}-{ch[1]}{sr}\n"
                   f"neurons {p['neurons']:,} of {lim['neurons']:,} ({_pct(u['neurons'])})\n"
                   f"memory {_bytes(p['memory_bytes'])} of {_bytes(lim['memory'])} ({_pct(u['memory'])}): "
                   f"neuron {_pct(u['neuron_memory'])}, synapse {_pct(u['synapse_memory'])}, "
                   f"axon {_pct(u['axon_memory'])}\n"
                   f"neuron {_bytes(mem.get('neuron'))}, synapse {_bytes(mem.get('synapse'))}, "
                   f"axon {_bytes(mem.get('axon'))}; binding: {p['binding'].replace('_', ' ')}\n"
                   f"synaptic ops per step {_int(p['synops'])}")
            label = (f'<text class="lbl" x="{x + cell / 2:.1f}" y="{y + cell / 2 + fs * 0.45:.1f}" '
                     f'font-size="{fs}">L{p["layer_index"]}</text>') if cell >= 16 else ""
            out.append(f'<g class="core used" data-core="{g}" data-chip="{c}" data-part="{pid}" '
                       f'data-layer="{escape(p["of"])}" style="{style}"><rect class="u" x="{x}" y="{y}" '
                       f'width="{cell}" height="{cell}" rx="2"/><rect class="stripe" x="{x}" y="{y}" '
                       f'width="{cell}" height="{max(2.0, round(cell * 0.14, 1))}" fill="{lc}"/>{label}'
                       f'<title>{escape(tip)}</title></g>')
    # links, over the gaps between cells
    for ln in v["links"]:
        (x0, y0), (x1, y1) = ln["a"], ln["b"]
        m = ln["messages_per_step"]
        t = math.sqrt(m / vmax_link) if vmax_link > 0 else 0.0
        col = scale(LINK_SCALE, t)
        w = round(1.5 + 4.5 * t, 2)
        if y0 == y1:  # horizontal
            yy = py(y0) + cell / 2
            a, b = px(x0) + cell, px(x1)
            seg = f'x1="{a:.1f}" y1="{yy:.1f}" x2="{b:.1f}" y2="{yy:.1f}"'
            arrows = f"→ {_int(ln['forward'])}, ← {_int(ln['backward'])}"
        else:
            xx = px(x0) + cell / 2
            a, b = py(y0) + cell, py(y1)
            seg = f'x1="{xx:.1f}" y1="{a:.1f}" x2="{xx:.1f}" y2="{b:.1f}"'
            arrows = f"↓ {_int(ln['forward'])}, ↑ {_int(ln['backward'])}"
        kind = "chip-to-chip link" if ln["chip_link"] else "link"
        dash = ' stroke-dasharray="3 2"' if ln["chip_link"] else ""
        out.append(f'<line class="link{" xchip" if ln["chip_link"] else ""}" data-m="{_attr(m)}" {seg} '
                   f'stroke="{col}" stroke-width="{w}"{dash}><title>{kind} ({x0},{y0})-({x1},{y1}): '
                   f'{_int(m)} messages per step ({arrows})</title></line>')
    out.append("</svg>")
    return "".join(out)


def _legend_bar(anchors: list[str], lo: str, hi: str, label: str) -> str:
    stops = "".join(f'<stop offset="{i / (len(anchors) - 1):.2f}" stop-color="{c}"/>' for i, c in enumerate(anchors))
    gid = "grad-" + "".join(ch if ch.isalnum() else "-" for ch in label)
    return (f'<div class="legend"><span class="ll">{escape(label)}</span><svg width="160" height="14">'
            f'<defs><linearGradient id="{gid}">{stops}</linearGradient></defs>'
            f'<rect width="160" height="14" rx="2" fill="url(#{gid})"/></svg>'
            f'<span class="lo">{escape(lo)}</span><span class="hi">{escape(hi)}</span></div>')


# ---------------------------------------------------------------------------
def _header(s: dict[str, Any]) -> str:
    n = s["network"]
    src = n["source"] or {}
    sha = (src.get("sha256") or "")[:12]
    place = s["placement"]
    badges = [("quantized" if n["quantized"] else "float only (--float)", "ok" if n["quantized"] else "warn")]
    if place:
        sysm = place["system"]
        used = sum(place["placements"]["optimized"]["cores_used_per_chip"].values()) \
            if "optimized" in place["placements"] else sysm["parts"]
        badges.append(((f"{sysm['parts']} parts on {sysm['chips_used']} of {sysm['chips']} chip(s), "
                       f"{used} of {sysm['cores']} cores"), "ok"))
    else:
        badges.append(("not placed", "warn"))
    b = "".join(f'<span class="badge {c}">{escape(t)}</span>' for t, c in badges)
    io = n.get("io") or {}
    inp = io.get("input") or {}
    outs = ", ".join(f"{o.get('name')} ({o.get('features')}{' per step' if o.get('sequence') else ''})"
                     for o in io.get("outputs", []))
    return (f'<header><h1>s4dc report <span class="model">{escape(str(src.get("file", "?")))}</span></h1>'
            f'<p class="sub">graph <b>{escape(str(n.get("graph")))}</b> · s4dc {escape(str(n.get("s4dc_version")))}'
            f' · sha256 {escape(sha)}…' + (f' · {escape(str(src["producer"]))}' if src.get("producer") else "")
            + f' · opset {escape(str(src.get("opset")))}'
            f' · input {escape(str(inp.get("name")))} ({inp.get("features")} per step, {n.get("time_steps")} steps)'
            f' → {escape(outs)} · {n["chip_layers"]} on-chip layers, {_int(n["params"])} parameters'
            f' · compiled in {s["compile_seconds"]:.2f} s</p><p>{b}</p></header>')


def _cards(s: dict[str, Any]) -> str:
    cards = []
    place = s["placement"]
    if place:
        o = place["placements"].get("optimized", {})
        nv = place["placements"].get("naive", {})
        om, nm = o.get("metrics", {}), nv.get("metrics", {})
        ratio = (om.get("traffic", 0) / nm["traffic"]) if nm.get("traffic") else 1.0
        cards.append(("traffic (optimized)", f"{_int(om.get('traffic'))}",
                      f"{ratio:.2f}× naive ({_int(nm.get('traffic'))}); messages/step × route cost"))
        gap = place.get("gap")
        lb = (place.get("bound") or {}).get("lower_bound")
        cards.append(("gap to lower bound", _pct(gap), f"objective {_int(om.get('objective'))}, bound {_int(lb)}"))
        busiest = max(place["parts"], key=lambda p: p["utilization"]["max"])
        cards.append(("fullest core", _pct(busiest["utilization"]["max"]),
                      f"L{busiest['layer_index']} {busiest['layer']}: {busiest['binding'].replace('_', ' ')}"))
        c = o.get("cost") or {}
        cards.append(("time per step (est.)", fmt_si(c.get("time_per_step_s"), "s"),
                      f"{_int(round(c.get('tokens_per_s', 0)))} tokens/s; bound by {c.get('bound_by')}"))
        cards.append(("latency per token (est.)", fmt_si(c.get("latency_per_token_s"), "s"),
                      f"pipeline of {c.get('depth_steps')} steps"))
        cards.append(("energy per token (est.)", fmt_si(c.get("energy_per_token_j"), "J"),
                      (f"{fmt_si(c.get('energy_dynamic_j'), 'J')} dynamic + {fmt_si(c.get('energy_static_j'), 'J')} "
                      "static")))
    q = s["quantization"]
    if q:
        cards.append(("output error vs float", _sci(q.get("output_rel_rms_error")),
                      f"relative RMS on the calibration set; {_int(q['saturations'])} saturations"))
    if not cards:
        return ""
    return '<section class="cards">' + "".join(
        f'<div class="card"><div class="ct">{escape(t)}</div><div class="cv">{escape(v)}</div>'
        f'<div class="cs">{escape(sub)}</div></div>' for t, v, sub in cards) + "</section>"


def _missing(s: dict[str, Any]) -> str:
    if not s["missing"]:
        return ""
    items = "".join(f"<li>{escape(m)}</li>" for m in s["missing"])
    return f'<section class="missing" id="missing"><h2>Not in this report</h2><ul>{items}</ul></section>'


def _mesh_section(s: dict[str, Any]) -> str:
    place = s["placement"]
    if not place:
        return ""
    views = [v for v in ("naive", "optimized") if v in place["placements"]]
    vmax = max((place["placements"][v]["max_link_messages"] for v in views), default=0)
    figs = []
    for v in views:
        pv = place["placements"][v]
        m = pv["metrics"]
        extra = f", {m['traffic_vs_naive']:.2f}× naive" if isinstance(m.get("traffic_vs_naive"), (int, float)) else ""
        figs.append(f'<figure><figcaption><b>{v}</b> · traffic {_int(m.get("traffic"))}{extra} · busiest router '
                    f'{_int(m.get("max_router_load"))} · chip crossings {_int(m.get("chip_crossings"))}</figcaption>'
                    f'{mesh_svg(place, v, vmax)}</figure>')
    opts = "".join(f'<option value="{k}">{escape(t)}</option>' for k, t in METRICS)
    legend_layers = "".join(
        f'<li data-layer="{escape(r["name"])}"><span class="sw" style="background:'
        f'{LAYER_COLORS[(r["index"] - 1) % len(LAYER_COLORS)]}"></span>L{r["index"]} {escape(r["name"])} '
        f'<span class="dim">{escape(r["op"])}, {r.get("cores", 0)} core{"s" if r.get("cores", 0) != 1 else ""}'
        f'</span></li>' for r in s["layers"] if r.get("index"))
    sysm = place["system"]
    note = ""
    if len(place["chips_shown"]) < sysm["chips"]:
        note = (f'<p class="dim">{sysm["chips"]} chips configured; the {len(place["chips_shown"])} in use are '
                "drawn.</p>")
    return (f'<section id="mesh"><h2>Placement on the mesh</h2>'
            f'<p class="dim">Each square is a neurocore ({place["mesh"][0]} × {place["mesh"][1]} mesh per chip, '
            f'{place["cores_per_chip"]} cores; chips on a {place["chip_grid"][0]} × {place["chip_grid"][1]} grid), '
            'filled by how full it is and labelled by layer; the stripe is the layer\'s colour. Lines are mesh '
            'links carrying messages (X-Y routes of every edge, both directions summed, same scale on both '
            'sides; dashed: chip-to-chip). Hover a core for its numbers and to highlight its layer.</p>'
            f'{note}<div class="controls"><label>colour cores by <select id="metric">{opts}</select></label>'
            f'{_legend_bar(UTIL_SCALE, "0%", "100%", "core utilization")}'
            f'{_legend_bar(LINK_SCALE, "0", _int(vmax), "messages per step on a link")}</div>'
            f'<div class="meshes">{"".join(figs)}<ul class="layers-legend">{legend_layers}</ul></div></section>')


def _placements_table(s: dict[str, Any]) -> str:
    place = s["placement"]
    if not place:
        return ""
    rows = []
    keys = [("traffic", "traffic"), ("objective", "objective"), ("max_router_load", "busiest router"),
            ("message_hops", "message hops"), ("chip_crossings", "chip crossings")]
    for name, pv in place["placements"].items():
        m = pv["metrics"]
        c = pv["cost"]
        cells = [td(escape(name))]
        cells += [td(_int(m.get(k)), k, m.get(k)) for k, _ in keys]
        tv = m.get("traffic_vs_naive", 1.0 if name == "naive" else None)
        cells.append(td("-" if tv is None else f"{tv:.2f}×", "traffic_vs_naive", tv))
        cells.append(td(fmt_si(c["energy_messages_j"], "J"), "energy_messages_j", c["energy_messages_j"]))
        cells.append(td(fmt_si(c["messages_s"], "s"), "messages_s", c["messages_s"]))
        rows.append(f'<tr data-placement="{name}">{"".join(cells)}</tr>')
    b = place.get("bound") or {}
    if b:
        comp = b.get("components", {})
        cells = [td("lower bound"), td(_int(b.get("traffic_lower_bound")), "traffic", b.get("traffic_lower_bound")),
                 td(_int(b.get("lower_bound")), "objective", b.get("lower_bound")),
                 td(_int(comp.get("max_router_load")), "max_router_load", comp.get("max_router_load")),
                 td(_int(comp.get("message_hops")), "message_hops", comp.get("message_hops")),
                 td(_int(comp.get("chip_crossings")), "chip_crossings", comp.get("chip_crossings")),
                 td(""), td(""), td("")]
        rows.append(f'<tr data-placement="bound" class="bound">{"".join(cells)}</tr>')
    head = [("placement", ""), ("traffic", "n"), ("objective", "n"), ("busiest router", "n"),
            ("message hops", "n"), ("chip crossings", "n"), ("traffic vs naive", "n"),
            ("message energy / token", "n"), ("message time / step", "n")]
    srch = place.get("search") or {}
    meth = (b.get("methods") or {}) if b else {}
    info = (f'<p class="dim">Traffic: messages per step × route cost (hop {place["spec"].get("hop_cost")}, '
            f'chip link {place["spec"].get("chip_link_cost")}); objective = traffic + '
            f'{place["spec"].get("router_load_weight")} × busiest router. Gap {_pct(place.get("gap"))}. '
            f'Search: seed {srch.get("seed")}, budget {srch.get("budget")}, greedy variant '
            f'{escape(str(srch.get("greedy_variant")))}'
            + (f', {_int(srch.get("anneal_moves"))} annealing moves' if srch.get("anneal_moves") else "")
            + (f'. Bound: {escape(", ".join(f"{k}: {v}" for k, v in meth.items() if isinstance(v, str)))}'
               if meth else "") + ".</p>")
    return f'<section id="placements"><h2>Placements</h2>{_table(head, rows, tid="placements-table")}{info}</section>'


def _layers_table(s: dict[str, Any]) -> str:
    placed = s["placement"] is not None
    rows = []
    for r in s["layers"]:
        idx = f"L{r['index']}" if r.get("index") else ""
        cells = [td(idx, "index", r.get("index")), td(escape(r["name"]), "name", cls="name"),
                 td(escape(r["op"]), "op"), td(r["where"], "where"),
                 td(_int(r.get("features")), "features", r.get("features")),
                 td(_int(r.get("states")) if r.get("states") is not None else "", "states", r.get("states"),
                    title=_states_title(r)),
                 td(_int(r.get("params")), "params", r.get("params"))]
        if placed:
            on = "cores" in r
            cells += [td(_int(r.get("cores")) if on else "", "cores", r.get("cores"), title=_stages_title(r)),
                      td(_int(r.get("neurons")) if on else "", "neurons", r.get("neurons")),
                      td(_int(r.get("synapses")) if on else "", "synapses", r.get("synapses")),
                      td(_bytes(r.get("memory_bytes")) if on else "", "memory_bytes", r.get("memory_bytes"),
                         title=(f"neuron {_bytes(r['memory']['neuron'])}, synapse {_bytes(r['memory']['synapse'])}, "
                                f"axon {_bytes(r['memory']['axon'])}") if on else None),
                      td(_pct(r.get("max_utilization")) if on else "", "max_utilization", r.get("max_utilization")),
                      td(_int(r.get("messages_in_per_step")) if on else "", "messages_in_per_step",
                         r.get("messages_in_per_step")),
                      td(_int(r.get("messages_out_per_step")) if on else "", "messages_out_per_step",
                         r.get("messages_out_per_step")),
                      td(_int(r.get("synops_per_step")) if on else "", "synops_per_step", r.get("synops_per_step")),
                      td(_pct(r.get("activity")) if on and r.get("activity") is not None else "", "activity",
                         r.get("activity")),
                      td(_pct(r.get("activation_sparsity")) if on and r.get("activation_sparsity") is not None
                         else "", "activation_sparsity", r.get("activation_sparsity")),
                      td(escape(str(r.get("binding") or "")) if on else "", "binding")]
        cells.append(td(_int(r.get("latency_steps")) if r.get("latency_steps") is not None else "",
                        "latency_steps", r.get("latency_steps")))
        rows.append(f'<tr data-layer="{escape(r["name"])}">{"".join(cells)}</tr>')
    head = [("#", "n"), ("layer", ""), ("op", ""), ("on", ""), ("features", "n"), ("states", "n"), ("params", "n")]
    if placed:
        head += [("cores", "n"), ("neurons", "n"), ("synapses", "n"), ("memory", "n"), ("fullest core", "n"),
                 ("msgs in/step", "n"), ("msgs out/step", "n"), ("synops/step", "n"), ("sends", "n"),
                 ("sparsity", "n"), ("split set by", "")]
    head += [("depth", "n")]
    note = ('<p class="dim">Sends: the fraction of (sample, step, unit) at which a unit\'s message changed, so '
            "that its sigma-delta unit sends; sparsity: the fraction of its outputs that are zero. Both measured "
            "on the calibration set in the bit-exact simulator at compile time (empty: not measured, 100% "
            "assumed).</p>" if placed else '<p class="dim">No placement: cores, neurons, synapses, memory and '
            "messages are known once the network is quantized and placed.</p>")
    return f'<section id="layers"><h2>Layers</h2>{_table(head, rows, tid="layers-table")}{note}</section>'


def _states_title(r: dict[str, Any]) -> str | None:
    """What a layer's state count is: S4D channels of N states, or P modes shared by every channel (MIMO)."""
    if r.get("states") is None:
        return None
    if r["op"] in ("mimo", "qmimo"):
        return f"{r['states']:,} complex modes shared by all {r.get('features')} output channels (MIMO)"
    per = r.get("states_per_channel")
    return (f"{r.get('units')} channels × {per} complex states" if per
            else f"{r['states']:,} complex states")


def _stages_title(r: dict[str, Any]) -> str | None:
    """A layer mapped as several stages (MIMO: mode neurons, then output units): its parts per stage."""
    st = r.get("stages") or []
    if len(st) < 2:
        return None
    parts = "; ".join(f"{x['stage']}: {x['parts']} part{'s' if x['parts'] != 1 else ''} of {x['units']} "
                      f"neurons" for x in st)
    return f"{parts}; {_int(r.get('messages_internal_per_step'))} messages per step between them"


def _cost_section(s: dict[str, Any]) -> str:
    c = s["cost"]
    if not c:
        return ""
    views = [v for v in ("naive", "optimized") if v in c["per_placement"]]
    lines = [("time per step", "time_per_step_s", "s"), ("  busiest core", "busiest_core_s", "s"),
             ("  messages (busiest router)", "messages_s", "s"), ("  barrier", "barrier_s", "s"),
             ("latency per token", "latency_per_token_s", "s"), ("tokens per second", "tokens_per_s", ""),
             ("energy per token", "energy_per_token_j", "J"), ("  synaptic ops", "energy_synops_j", "J"),
             ("  neuron updates", "energy_neurons_j", "J"), ("  messages", "energy_messages_j", "J"),
             ("  static (chips in use)", "energy_static_j", "J"),
             ("synaptic ops per step", "synops_per_step", ""), ("neuron updates per step",
                                                                 "neuron_updates_per_step", ""),
             ("messages per step", "messages_per_step", "")]
    rows = []
    for label, k, unit in lines:
        cells = [f'<td class="{"sub" if label.startswith("  ") else "main"}">{escape(label.strip())}</td>']
        for v in views:
            val = c["per_placement"][v][k]
            text = fmt_si(val, unit) if unit else _int(round(val) if k == "tokens_per_s" else val)
            cells.append(f'<td data-k="{k}" data-placement="{v}" data-v="{_attr(val)}">{text}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    d = c["per_placement"][views[-1]]["depth_steps"]
    head = "".join(f'<th class="n">{escape(v)}</th>' for v in views)
    num = (f'<div class="tw"><table id="cost-table"><thead><tr><th>per token (one step per token)</th>{head}</tr>'
           f'</thead><tbody>{"".join(rows)}</tbody></table></div><p class="dim">Latency = {d} pipeline steps × '
           'time per step. Energy and time are estimates from the figures on the right, not measurements.</p>')
    figs = "".join(
        f'<tr><td>{escape(f["name"])}</td><td class="n">{_figure_value(f)}</td><td>{escape(f["what"])}</td>'
        f'<td class="{"assumed" if f["assumed"] else "src"}">{escape(f["source"])}'
        f'{" (assumed)" if f["assumed"] and f["source"] != "assumed" else ""}</td></tr>' for f in c["figures"])
    asm = "".join(f"<li>{escape(a)}</li>" for a in c["assumptions"])
    refs = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in c.get("sources", {}).items())
    return (f'<section id="cost"><h2>Estimated latency and energy per token</h2><div class="two">'
            f'<div>{num}<p class="dim">The paper\'s claim for comparison (Meyer 2024, measured '
            'on Loihi 2): token by token, about 1000× less energy and 75× lower latency than a recurrent S4D on '
            'a Jetson Orin Nano.</p></div>'
            '<div><h3>Figures used (one place: s4dc/targets/loihi2/cost.py)</h3><div class="tw">'
            f'<table class="figs"><thead><tr><th>name</th><th>value</th>'
            f'<th>what</th><th>source</th></tr></thead><tbody>{figs}</tbody></table></div>'
            f'<h3>Assumptions</h3><ul class="asm">{asm}</ul><h3>Sources</h3><ul class="asm">{refs}</ul>'
            f'</div></div></section>')


def _figure_value(f: dict[str, Any]) -> str:
    u = f["unit"]
    if u in ("J", "s", "W"):
        return escape(fmt_si(f["value"], u))
    if u == "messages/s":
        return escape(f"{f['value'] / 1e9:g} G/s")
    return escape(f"{f['value']:g} {u}")


def _quant_section(s: dict[str, Any]) -> str:
    q = s["quantization"]
    if not q:
        return ""
    rows = []
    emax = max((r["rel_rms_error"] or 0 for r in q["layers"] if r.get("rel_rms_error") is not None), default=0) or 1.0
    for r in q["layers"]:
        rel = r.get("rel_rms_error")
        sat = r.get("saturations")
        cells = [td(escape(r["name"]), "name", cls="name"), td(escape(str(r.get("op"))), "op"),
                 td(bits_text(r), "bits"), td(_int(r.get("exp_out")), "exp_out", r.get("exp_out")),
                 td(escape(exponents_text(r)), "exponents"),
                 td(_int(sat), "saturations", sat, cls="bad" if sat else ""),
                 td(_sci(rel) + (f'<span class="bar err" style="width:{max(1, round(60 * rel / emax))}px"></span>'
                                 if rel is not None else ""), "rel_rms_error", rel),
                 td(f'{r["max_abs_eigenvalue"]:.6f}' if r.get("max_abs_eigenvalue") is not None else "",
                    "max_abs_eigenvalue", r.get("max_abs_eigenvalue"))]
        rows.append(f'<tr data-qlayer="{escape(r["name"])}">{"".join(cells)}</tr>')
    head = [("layer", ""), ("op", ""), ("bits w/a/b/c/state/msg", ""), ("output exp", "n"), ("exponents, shifts", ""),
            ("saturations", "n"), ("rel. RMS error vs float", "n"), ("max |eigenvalue|", "n")]
    return (f'<section id="quantization"><h2>Quantization</h2><p class="dim">Calibration: '
            f'{escape(str(q.get("calibration")))}; range margin {q.get("margin")}; output error '
            f'{_sci(q.get("output_rel_rms_error"))} (relative RMS against float); {_int(q["saturations"])} '
            f'saturated values in total. An integer m of a tensor with exponent e means m · 2^e. A MIMO '
            f'layer\'s B and C are synapse weights: its b and c widths are the weight width.</p>'
            f'{_table(head, rows, tid="quant-table")}</section>')


def _realize_section(s: dict[str, Any]) -> str:
    if not s["realize"]:
        return ""
    rows = []
    for r in s["realize"]:
        cells = [td(escape(r["layer"]), "layer", cls="name"), td(_int(r.get("modes")), "modes", r.get("modes")),
                 td(_int(r.get("kernel_taps")), "kernel_taps", r.get("kernel_taps")),
                 td(_sci(r.get("max_rel_error")), "max_rel_error", r.get("max_rel_error")),
                 td(f'{r.get("max_abs_pole", 0):.8f}'.rstrip("0") if r.get("max_abs_pole") is not None else "-",
                    "max_abs_pole", r.get("max_abs_pole"))]
        rows.append(f'<tr data-rlayer="{escape(r["layer"])}">{"".join(cells)}</tr>')
    head = [("layer", ""), ("modes", "n"), ("kernel taps", "n"), ("max rel. kernel error", "n"),
            ("max |pole|", "n")]
    return (f'<section id="realize"><h2>Kernels realized as state spaces</h2>'
            f'{_table(head, rows, tid="realize-table")}</section>')


def _passes_section(s: dict[str, Any]) -> str:
    tmax = max((p["seconds"] or 0 for p in s["passes"]), default=0) or 1.0
    rows = []
    for p in s["passes"]:
        sec = p["seconds"]
        bar = (f'<span class="bar" style="width:{max(1, round(100 * (sec or 0) / tmax))}px"></span>'
               if sec is not None else "")
        cells = [td(str(p["index"]), "index", p["index"]), td(escape(str(p["pass"])), "pass", cls="name"),
                 td((f"{sec * 1e3:,.1f} ms" if sec is not None else "-") + bar, "seconds", sec, cls="t"),
                 td(escape(p["summary"]), "changes", cls="wrap")]
        rows.append(f'<tr data-pass-index="{p["index"]}" data-pass="{escape(str(p["pass"]))}">{"".join(cells)}</tr>')
    head = [("#", "n"), ("pass", ""), ("time", "n"), ("what changed", "")]
    other = s.get("other_timings") or {}
    extra = ""
    if other:
        extra = ('<p class="dim">Other timings: ' + escape(", ".join(f"{k} {v:.3f} s" for k, v in other.items()))
                 + "</p>")
    flow = " → ".join(s["network"].get("flow") or [])
    return (f'<section id="passes"><h2>Pass log</h2><p class="dim">Flow: {escape(flow)}; '
            f'{s["compile_seconds"]:.2f} s in passes.</p>{_table(head, rows, tid="passes-table")}{extra}</section>')


def _spec_section(s: dict[str, Any]) -> str:
    place = s["placement"]
    if not place:
        return ""
    spec = place["spec"]
    items = "".join(f'<div><span class="k">{escape(k)}</span><span class="v">{escape(json.dumps(v))}</span></div>'
                    for k, v in spec.items() if k not in ("format", "format_version"))
    return (f'<section id="spec"><h2>Hardware model</h2><p class="dim">The Loihi 2 system placed on '
            f'(docs/hardware_model.md).</p><div class="kv">{items}</div></section>')


CSS = """
:root{--bg:#f6f7f9;--fg:#1d2330;--dim:#5d6675;--line:#dde1e7;--card:#fff;--acc:#2b6cb0}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",sans-serif}
main{max-width:1380px;margin:0 auto;padding:18px 24px 40px}
header h1{margin:0 0 4px;font-size:24px;font-weight:650}
header .model{color:var(--acc)}
.sub{margin:0 0 6px;color:var(--dim)}
.badge{display:inline-block;padding:2px 9px;border-radius:10px;font-size:12.5px;margin-right:6px;
background:#e6f0fa;color:#1f4f82;border:1px solid #c5d9ef}
.badge.warn{background:#fff4e0;color:#8a5300;border-color:#f0d6a8}
h2{font-size:18px;margin:26px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:14.5px;margin:8px 0 6px}
.dim{color:var(--dim);font-size:13px;margin:6px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(165px,1fr));gap:10px;margin:14px 0 4px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.ct{font-size:12px;color:var(--dim);text-transform:uppercase;letter-spacing:.03em}
.cv{font-size:22px;font-weight:650;margin:2px 0;font-variant-numeric:tabular-nums}
.cs{font-size:12.5px;color:var(--dim)}
.missing{background:#fff8e6;border:1px solid #f0d6a8;border-radius:8px;padding:4px 16px;margin-top:14px}
.missing h2{border:0;margin:8px 0 0;font-size:16px}
.controls{display:flex;flex-wrap:wrap;gap:18px;align-items:center;margin:8px 0}
.controls select{font:inherit;padding:2px 4px}
.legend{display:grid;grid-template-columns:auto 160px;grid-template-rows:auto auto;column-gap:8px;
font-size:12px;color:var(--dim);align-items:center}
.legend .ll{grid-row:1/3}
.legend .lo{grid-column:2;grid-row:2;justify-self:start}
.legend .hi{grid-column:2;grid-row:2;justify-self:end}
.meshes{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px 10px}
figcaption{font-size:13px;margin-bottom:4px}
svg.mesh{display:block;max-width:100%;height:auto}
svg.mesh .chip{fill:none;stroke:#b8c0cc;stroke-width:1}
svg.mesh .chiplabel{font-size:10px;fill:var(--dim)}
svg.mesh .free{fill:#eef0f3;stroke:#dde1e7;stroke-width:.6}
svg.mesh .u{stroke:#8a94a3;stroke-width:.6}
svg.mesh[data-metric="max"] .u{fill:var(--max)} svg.mesh[data-metric="max"] .lbl{fill:var(--tmax)}
svg.mesh[data-metric="neurons"] .u{fill:var(--neurons)} svg.mesh[data-metric="neurons"] .lbl{fill:var(--tneurons)}
svg.mesh[data-metric="memory"] .u{fill:var(--memory)} svg.mesh[data-metric="memory"] .lbl{fill:var(--tmemory)}
svg.mesh .lbl{text-anchor:middle;font-weight:600;pointer-events:none;font-family:system-ui,"DejaVu Sans",sans-serif}
svg.mesh .link{stroke-linecap:round}
svg.mesh g.core.hl .u{stroke:#d62728;stroke-width:2.2}
.layers-legend{list-style:none;margin:0;padding:8px 10px;background:var(--card);border:1px solid var(--line);
border-radius:8px;font-size:12.5px;max-height:680px;overflow:auto}
.layers-legend li{padding:1px 0;white-space:nowrap}
.layers-legend li.hl{background:#fde2e2}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.tw{overflow-x:auto}
table{border-collapse:collapse;background:var(--card);border:1px solid var(--line);font-size:13px;
font-variant-numeric:tabular-nums}
th,td{padding:4px 9px;border-bottom:1px solid #eceff3;text-align:left;white-space:nowrap}
th{background:#eef1f5;font-weight:600;position:sticky;top:0}
table.sortable th{cursor:pointer} table.sortable th:hover{background:#e2e7ee}
th.n{text-align:right}
td[data-v],td.n{text-align:right}
td.name{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px}
td.wrap{white-space:normal;max-width:720px;color:var(--dim)}
td.bad{color:#b00020;font-weight:600}
td.sub{padding-left:24px;color:var(--dim)} td.main{font-weight:600}
tr.bound td{color:var(--dim);font-style:italic}
tr.hl td{background:#fde2e2}
.bar{display:inline-block;height:8px;background:#8fb3de;margin-left:8px;vertical-align:0;border-radius:2px}
.two{display:grid;grid-template-columns:minmax(380px,1fr) minmax(420px,1.4fr);gap:24px;align-items:start}
@media (max-width:1000px){.two{grid-template-columns:1fr}}
table.figs td{white-space:normal;font-size:12.5px}
td.assumed{color:#8a5300} td.src{color:var(--dim)}
ul.asm{margin:0;padding-left:18px;font-size:12.5px;color:#333}
ul.asm li{margin:3px 0}
.kv{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:0 18px;background:var(--card);
border:1px solid var(--line);border-radius:6px;padding:6px 12px;font-size:13px}
.kv div{display:flex;justify-content:space-between;border-bottom:1px solid #eceff3;padding:3px 0}
.kv .k{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px}
.bar.err{background:#e8a07a}
footer{margin-top:30px;color:var(--dim);font-size:12px}
#js-errors{display:none;background:#fde2e2;border:1px solid #e8a5a5;padding:6px 10px;border-radius:6px}
"""

# Runs first: any error, rejected promise or console.error is recorded in the
# DOM (html[data-js-errors], #js-errors), so a headless --dump-dom shows it.
TRAP_JS = """
(function(){var n=0;function rec(m){n++;var r=document.documentElement;r.setAttribute('data-js-errors',String(n));
r.setAttribute('data-js-error-'+n,String(m).slice(0,300));var b=document.getElementById('js-errors');
if(b){b.style.display='block';b.textContent+=String(m)+'\\n';}}
window.addEventListener('error',function(e){rec('error: '+(e&&e.message?e.message:e));},true);
window.addEventListener('unhandledrejection',function(e){rec('unhandledrejection: '+(e&&e.reason));});
var ce=console.error;console.error=function(){rec('console.error: '+Array.prototype.join.call(arguments,' '));
return ce.apply(console,arguments);};})();
"""

MAIN_JS = """
(function(){
var sel=document.getElementById('metric');
if(sel){sel.addEventListener('change',function(){document.querySelectorAll('svg.mesh').forEach(function(s){
s.setAttribute('data-metric',sel.value);});});}
function hl(layer,on){document.querySelectorAll('[data-layer]').forEach(function(el){
if(el.getAttribute('data-layer')===layer){el.classList.toggle('hl',on);}});}
document.querySelectorAll('g.core.used, .layers-legend li, #layers-table tr[data-layer]').forEach(function(el){
var l=el.getAttribute('data-layer');el.addEventListener('mouseenter',function(){hl(l,true);});
el.addEventListener('mouseleave',function(){hl(l,false);});});
document.querySelectorAll('table.sortable').forEach(function(t){var ths=t.querySelectorAll('thead th');
ths.forEach(function(th,i){var dir=1;th.addEventListener('click',function(){var tb=t.tBodies[0];
var rows=Array.prototype.slice.call(tb.rows);rows.sort(function(a,b){var x=a.cells[i],y=b.cells[i];
if(!x||!y)return 0;var xv=x.getAttribute('data-v'),yv=y.getAttribute('data-v');
if(xv!==null&&yv!==null&&xv!==''&&yv!==''&&!isNaN(+xv)&&!isNaN(+yv))return dir*((+xv)-(+yv));
return dir*x.textContent.localeCompare(y.textContent);});dir=-dir;
rows.forEach(function(r){tb.appendChild(r);});});});});
window.addEventListener('load',function(){var r=document.documentElement;
r.setAttribute('data-load-ms',performance.now().toFixed(1));r.setAttribute('data-ready','1');});
})();
"""


def render(s: dict[str, Any]) -> str:
    title = f"s4dc report: {s['network']['source'].get('file', '?')}"
    body = "".join([
        _header(s), '<div id="js-errors"></div>', _missing(s), _cards(s), _mesh_section(s), _placements_table(s),
        _layers_table(s), _cost_section(s), tradeoff_section(s), _quant_section(s), _realize_section(s),
        _passes_section(s),
        _spec_section(s),
        (f'<footer>Written by s4dc {escape(str(s["network"].get("s4dc_version")))} from the files beside it '
         '(manifest.json, graph.json, params.npz, placement.json, timings.json) · <code>s4dc report OUT/</code> '
         'prints the same numbers; <code>--json</code> gives them machine-readable; docs/report.md explains '
         'them.</footer>')])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>{escape(title)}</title><script>{TRAP_JS}</script><style>{CSS}{FIG_CSS}</style></head>'
            f'<body><main>{body}</main><script>{MAIN_JS}</script></body></html>\n')
