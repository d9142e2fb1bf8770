"""Per-token latency and energy of a placed network, estimated from public
figures. Every constant is here, with its source; docs/report.md explains the
model.

Intel has published no per-operation energy or time for Loihi 2. The
figures below are Loihi's (the first generation, Intel 14 nm, 0.75 V,
pre-silicon simulation consistent with early silicon: Davies et al., "Loihi:
a neuromorphic manycore processor with on-chip learning", IEEE Micro 38(1),
2018, Table 2) and a measured static power (Frady et al., "Neuromorphic
nearest-neighbor search using Intel's Pohoiki Springs", NICE 2020). They
stand in for Loihi 2 (Intel 4), which Intel states is up to 10x faster;
no such factor is applied. Where nothing public exists the value is marked
assumed. The estimate is a model, not a measurement: compare placements and
bit widths with it, not absolute numbers with a chip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SOURCES = {
    "Davies 2018": "M. Davies et al., \"Loihi: a neuromorphic manycore processor with on-chip learning\", IEEE Micro "
                   "38(1), 2018, Table 2: Loihi 1, Intel 14 nm, 0.75 V, pre-silicon simulation consistent with "
                   "early silicon",
    "Frady 2020": "E. P. Frady et al., \"Neuromorphic nearest-neighbor search using Intel's Pohoiki Springs\", "
                  "NICE 2020: power measured on a 32-chip Loihi 1 board (Table 1: 3.34 W static) and barrier "
                  "times of 768-chip systems (sec. 4.3)",
    "Meyer 2024": "S. M. Meyer et al., \"A diagonal structured state space model on Loihi 2 for efficient streaming "
                  "sequence processing\", arXiv 2409.15022: the paper's Loihi 2 measurements",
}
DAVIES = "Davies 2018, Table 2"
FRADY = "Frady 2020, Table 1"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    what: str
    source: str
    assumed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "what": self.what,
                "source": self.source, "assumed": self.assumed}


# -- the constants (one place) ------------------------------------------------
E_SYNOP = Figure("E_synop", 23.6e-12, "J", "energy per synaptic operation (min)", DAVIES)
E_NEURON = Figure("E_neuron", 81e-12, "J", "energy per neuron update (active)", DAVIES)
E_SPIKE = Figure("E_spike", 1.7e-12, "J", "energy per message delivered (within-tile spike energy)", DAVIES)
E_HOP_X = Figure("E_hop_x", 3.0e-12, "J", "energy per mesh link along x (tile hop E-W)", DAVIES)
E_HOP_Y = Figure("E_hop_y", 4.0e-12, "J", "energy per mesh link along y (tile hop N-S)", DAVIES)
T_SYNOP = Figure("T_synop", 3.5e-9, "s", "time per synaptic operation (max)", DAVIES)
T_NEURON = Figure("T_neuron", 8.4e-9, "s", "time per neuron update (active)", DAVIES)
T_SPIKE = Figure("T_spike", 2.1e-9, "s", "latency of a message within a tile", DAVIES)
T_HOP_X = Figure("T_hop_x", 4.1e-9, "s", "latency per mesh link along x (tile hop E-W)", DAVIES)
T_HOP_Y = Figure("T_hop_y", 6.5e-9, "s", "latency per mesh link along y (tile hop N-S)", DAVIES)
LINK_BW = Figure("link_bw", 3.44e9, "messages/s", "messages a router passes per second "
                 "(cross-sectional spike bandwidth per tile)", DAVIES)
T_BARRIER_CHIP = Figure("T_barrier_chip", 465e-9, "s", "barrier synchronization over one chip's mesh "
                        "(113-465 ns for 1-32 tiles; the whole chip: 465 ns)", DAVIES)
T_BARRIER_CHIP_HOP = Figure("T_barrier_chip_hop", 0.213e-6, "s", "added barrier time per chip of chip-grid "
                            "diameter (16.2 us over 12 x 64 chips, 14.3 us over 4 x 64: about 0.21 us per chip "
                            "of diameter), assumed linear", "Frady 2020, sec. 4.3",
                            assumed=True)
P_STATIC_CHIP = Figure("P_static_chip", 0.104, "W", "static (leakage) power per chip in use, for the whole "
                       "step (3.34 W / 32 chips); its voltage is not stated, so it is not Table 2's operating point", FRADY)
CHIP_LINK = Figure("chip_link_factor", 0.0, "x hop", "a chip-to-chip link costs the spec's chip_link_cost / "
                   "hop_cost times an x hop, in energy and latency", "no public figure; placement.json spec", assumed=True)
ASSUMPTIONS = (
    ("Loihi 1 per-operation figures stand in for Loihi 2 (Intel 4; Intel states up to 10x faster; "
    "no per-operation Loihi 2 figures are public). No speed-up factor is applied."),
    ("Every on-chip neuron updates every step (S4D state neurons and sigma-delta units alike) and costs one "
    "active neuron update, although a complex S4D state update does more work than a LIF update."),
    ("A synaptic operation on a 24-bit graded message with an 8-bit weight costs what a Loihi 1 binary-spike "
    "synaptic op costs. Synaptic ops per step = incoming messages x the synapses each reaches in its core "
    "(placement.json synops_per_step) + each S4D state's synapse to its channel unit on the same core."),
    ("Messages per step come from placement.json (activity 1.0 unless measured). Each costs one delivery plus "
    "one hop per mesh link on its X-Y route; a mesh position of our model (one core) counts as one Loihi tile."),
    ("Time per step = max(busiest core's synaptic ops x T_synop + neurons x T_neuron, longest route latency + "
    "busiest router's messages / link_bw) + barrier; compute and messages overlap (roofline-style)."),
    ("Latency per token = pipeline depth x time per step: every synapse stage adds one step (as lava's Dense): "
    "1 per affine, 2 per S4D layer, 1 per add or ReLU, along the longest path."),
    "Host I/O (encoding the input, reading outputs) and the host's readout are not counted.",
)


def figures(spec: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The constants as JSON, the chip-link factor filled in from the spec."""
    out = []
    for f in (E_SYNOP, E_NEURON, E_SPIKE, E_HOP_X, E_HOP_Y, T_SYNOP, T_NEURON, T_SPIKE, T_HOP_X, T_HOP_Y,
              LINK_BW, T_BARRIER_CHIP, T_BARRIER_CHIP_HOP, P_STATIC_CHIP, CHIP_LINK):
        d = f.to_json()
        if f is CHIP_LINK:
            d["value"] = chip_link_factor(spec or {})
        out.append(d)
    return out


def chip_link_factor(spec: dict[str, Any]) -> float:
    hop = float(spec.get("hop_cost", 1.0) or 1.0)
    return float(spec.get("chip_link_cost", 16.0)) / hop


def barrier_time(chip_grid_diameter: int) -> float:
    return T_BARRIER_CHIP.value + T_BARRIER_CHIP_HOP.value * max(0, chip_grid_diameter)


def estimate(parts: list[dict[str, Any]], routes: list[dict[str, Any]], spec: dict[str, Any],
             max_router_load: float, depth_steps: int, chips_used: int, chip_grid_diameter: int) -> dict[str, Any]:
    """One placement's cost per token.

    parts: per part `synops` (synaptic ops per step, internal ones included) and `neurons`;
    routes: per edge `messages` (per step), `x_hops`, `y_hops`, `chip_links` (of those hops,
    how many cross a chip boundary, split by axis as `chip_x`, `chip_y`)."""
    k = chip_link_factor(spec)
    synops = sum(p["synops"] for p in parts)
    neurons = sum(p["neurons"] for p in parts)
    e_syn = synops * E_SYNOP.value
    e_neu = neurons * E_NEURON.value
    e_msg = 0.0
    msgs = 0.0
    route_t = 0.0
    for r in routes:
        m = r["messages"]
        xs, ys = r["x_hops"] - r["chip_x"], r["y_hops"] - r["chip_y"]
        chip = r["chip_x"] + r["chip_y"]
        msgs += m
        e_msg += m * (E_SPIKE.value + xs * E_HOP_X.value + ys * E_HOP_Y.value + chip * k * E_HOP_X.value)
        if m > 0:
            route_t = max(route_t, T_SPIKE.value + xs * T_HOP_X.value + ys * T_HOP_Y.value
                          + chip * k * T_HOP_X.value)
    busiest = max(parts, key=lambda p: p["synops"] * T_SYNOP.value + p["neurons"] * T_NEURON.value,
                  default=None)
    t_core = (busiest["synops"] * T_SYNOP.value + busiest["neurons"] * T_NEURON.value) if busiest else 0.0
    t_noc = route_t + max_router_load / LINK_BW.value
    t_bar = barrier_time(chip_grid_diameter)
    t_step = max(t_core, t_noc) + t_bar
    e_static = P_STATIC_CHIP.value * chips_used * t_step
    dynamic = e_syn + e_neu + e_msg
    return {
        "time_per_step_s": t_step,
        "busiest_core_s": t_core,
        "busiest_part": busiest.get("id") if busiest else None,
        "messages_s": t_noc,
        "barrier_s": t_bar,
        "bound_by": "compute" if t_core >= t_noc else "messages",
        "depth_steps": depth_steps,
        "latency_per_token_s": depth_steps * t_step,
        "tokens_per_s": (1.0 / t_step) if t_step > 0 else math.inf,
        "synops_per_step": synops,
        "neuron_updates_per_step": neurons,
        "messages_per_step": msgs,
        "energy_synops_j": e_syn,
        "energy_neurons_j": e_neu,
        "energy_messages_j": e_msg,
        "energy_dynamic_j": dynamic,
        "energy_static_j": e_static,
        "energy_per_token_j": dynamic + e_static,
    }
