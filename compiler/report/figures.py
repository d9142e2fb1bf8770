"""The report's trade-off figures (inline SVG): the partitioner's splits as
cores against latency and energy per token with the chosen split marked,
and modelled energy per token against activation sparsity."""
from __future__ import annotations

import math
from html import escape
from typing import Any, Callable


W, H = 400, 250                     # px per panel
PAD_L, PAD_R, PAD_T, PAD_B = 64, 14, 14, 42
MARK_OF = {"cores": "C", "latency": "L", "energy": "E", "edp": "D"}


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 2.5, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def scatter(points: list[dict[str, Any]], x: str, y: str, xlabel: str, ylabel: str, *, fig_id: str,
            xfmt: Callable[[float], str], yfmt: Callable[[float], str], chosen: int | None = None,
            marks: dict[int, str] | None = None, line: bool = True) -> str:
    """One panel: points (x, y) joined in order, `chosen` ringed, `marks`
    labelled; every point carries data-x / data-y (its values) for tests."""
    xs = [float(p[x]) for p in points]
    ys = [float(p[y]) for p in points]
    x0, x1 = min(xs + [0.0]), max(xs) or 1.0
    y0, y1 = 0.0, max(ys) * 1.08 or 1.0
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def px(v: float) -> float:
        return PAD_L + (v - x0) / ((x1 - x0) or 1.0) * pw

    def py(v: float) -> float:
        return PAD_T + ph - (v - y0) / ((y1 - y0) or 1.0) * ph

    g = [f'<rect class="plot" x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}"/>']
    for t in _ticks(x0, x1):
        g.append(f'<line class="grid" x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{PAD_T}" y2="{PAD_T + ph}"/>'
                 f'<text class="tick" x="{px(t):.1f}" y="{PAD_T + ph + 14}" text-anchor="middle">'
                 f'{escape(xfmt(t))}</text>')
    for t in _ticks(y0, y1):
        g.append(f'<line class="grid" x1="{PAD_L}" x2="{PAD_L + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}"/>'
                 f'<text class="tick" x="{PAD_L - 4}" y="{py(t) + 4:.1f}" text-anchor="end">{escape(yfmt(t))}</text>')
    g.append(f'<text class="axis" x="{PAD_L + pw / 2}" y="{H - 6}" text-anchor="middle">{escape(xlabel)}</text>'
             f'<text class="axis" transform="translate(12 {PAD_T + ph / 2}) rotate(-90)" text-anchor="middle">'
             f'{escape(ylabel)}</text>')
    if line and len(points) > 1:
        d = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs, ys))
        g.append(f'<polyline class="curve" points="{d}"/>')
    for i, (a, b) in enumerate(zip(xs, ys)):
        cls = "pt chosen" if i == chosen else "pt"
        g.append(f'<circle class="{cls}" data-i="{i}" data-x="{a!r}" data-y="{b!r}" cx="{px(a):.1f}" '
                 f'cy="{py(b):.1f}" r="{5.5 if i == chosen else 2.6}"><title>{escape(xlabel)} {escape(xfmt(a))}, '
                 f'{escape(ylabel)} {escape(yfmt(b))}{" (chosen)" if i == chosen else ""}</title></circle>')
    for i, label in (marks or {}).items():
        right = px(xs[i]) > W - PAD_R - 40   # near the right edge: label to the left of the point
        anchor = ' text-anchor="end"' if right else ""
        g.append(f'<text class="mark" data-mark="{escape(label)}" data-i="{i}" '
                 f'x="{px(xs[i]) + (-6 if right else 6):.1f}" y="{py(ys[i]) - 6:.1f}"{anchor}>{escape(label)}</text>')
    return f'<svg class="fig" id="{fig_id}" viewBox="0 0 {W} {H}" width="{W}" height="{H}">{"".join(g)}</svg>'


def _us(v: float) -> str:
    return f"{v * 1e6:.3g}"


def _uj(v: float) -> str:
    return f"{v * 1e6:.3g}"


def tradeoff_section(s: dict[str, Any]) -> str:
    place = s.get("placement") or {}
    t, sw = place.get("tradeoff"), place.get("sparsity_sweep")
    if not t and not sw:
        return ""
    parts = []
    if t:
        c = t["candidates"]
        marks: dict[int, str] = {}
        for obj, i in sorted(t["best"].items(), key=lambda kv: list(MARK_OF).index(kv[0])):  # C L E D order
            marks[i] = (marks[i] + MARK_OF[obj]) if i in marks else MARK_OF[obj]
        ch = t["chosen"]
        cc = c[ch]
        lim = [f"at most {t['max_latency_us']:g} µs per token" if t.get("max_latency_us") else "",
               f"at most {t['max_cores']} cores" if t.get("max_cores") else ""]
        lim_text = " and ".join(x for x in lim if x) or "no latency or core limit"
        placed = t.get("chosen_placed") or {}
        figs = ('<figure><figcaption>Latency per token (µs) against cores</figcaption>'
                + scatter(c, "cores", "latency_per_token_s", "cores", "latency per token (µs)", fig_id="pareto-latency",
                          xfmt=lambda v: f"{v:g}", yfmt=_us, chosen=ch, marks=marks) + "</figure>"
                + '<figure><figcaption>Energy per token (µJ) against cores</figcaption>'
                + scatter(c, "cores", "energy_per_token_j", "cores", "energy per token (µJ)", fig_id="pareto-energy",
                          xfmt=lambda v: f"{v:g}", yfmt=_uj, chosen=ch, marks=marks) + "</figure>")
        parts.append(
            f'<h3>Splits considered: cores, latency and energy per token</h3><div class="meshes">{figs}</div>'
            f'<p class="dim" id="tradeoff-note" data-objective="{escape(t["objective"])}" data-chosen="{ch}">'
            f'Objective <b>{escape(t["objective"])}</b>, {escape(lim_text)}: the ringed point, {cc["cores"]} cores, '
            f'{_us(cc["latency_per_token_s"])} µs and {_uj(cc["energy_per_token_j"])} µJ per token before '
            f'placement'
            + (f' ({_us(placed["latency_per_token_s"])} µs, {_uj(placed["energy_per_token_j"])} µJ as placed)'
               if placed else "")
            + f'. {len(c)} splits, from each layer\'s fewest parts to one layer spread further at a time; letters '
            f'mark the best split for each objective (C cores, L latency, E energy, D energy × latency). '
            f'Costed before placement with expected hops; compile with <code>--objective</code>, '
            f'<code>--max-latency-us</code>, <code>--max-cores</code>.</p>')
    if sw:
        pts = sw["sweep"]
        parts.append(
            '<h3>Modelled energy per token against activation sparsity</h3><div class="meshes"><figure>'
            '<figcaption>Energy per token (µJ) against the ReLU layers\' mean sparsity</figcaption>'
            + scatter(pts, "mean_sparsity", "energy_per_token_j", "activation sparsity (fraction of zero outputs)",
                      "energy per token (µJ)", fig_id="sparsity-energy", xfmt=lambda v: f"{v:.2g}", yfmt=_uj,
                      chosen=0, marks={0: "measured"})
            + f'</figure></div><p class="dim">Measured on {sw["samples"]} calibration sequences of {sw["steps"]} '
            'steps (ringed), then every ReLU layer\'s output shifted down by quantiles of its positive values '
            '(as a negative bias on its input would; downstream layers keep their measured activity). Neuron '
            'updates happen every step whatever the sparsity, so they set the floor.</p>')
    return f'<section id="tradeoff"><h2>Trade-offs</h2>{"".join(parts)}</section>'


CSS = """
svg.fig{display:block;max-width:100%;height:auto;font-family:system-ui,"DejaVu Sans",sans-serif}
svg.fig .plot{fill:#fbfcfd;stroke:#c9d0da}
svg.fig .grid{stroke:#e6e9ee;stroke-width:1}
svg.fig .tick{font-size:10.5px;fill:#5d6675}
svg.fig .axis{font-size:11.5px;fill:#1d2330}
svg.fig .curve{fill:none;stroke:#9fb3c8;stroke-width:1.2}
svg.fig .pt{fill:#2b6cb0}
svg.fig .pt.chosen{fill:none;stroke:#d62728;stroke-width:2.4}
svg.fig .mark{font-size:11px;font-weight:700;fill:#d62728}
"""

__all__ = ["CSS", "scatter", "tradeoff_section"]
