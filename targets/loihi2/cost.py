"""Per-token latency and energy of a network on Loihi 2: the cost model
(docs/hardware_model.md, "Latency and energy").

Structure after Timcheck, Pierro and Shrestha (arXiv 2601.10035): a core
works through its neuron updates (DendOps), synaptic ops and synaptic-memory
reads, the network on chip moves message bits, and a barrier closes every
time step. Their runtime model is a max-affine lower bound; here

    time per step = max(busiest core: max(DendOps x T_dend, SynOps x T_synop,
                                          SynMem bytes x T_synmem),
                        busiest router: bits x T_bit) + barrier
    energy per token = SynOps x E_synop + DendOps x E_dend
                       + messages x (E_spike + hops x E_hop) + chips x E_step
                       + (chips x P_chip + cores x P_core) x time per step
    latency per token = pipeline depth (synapse stages) x time per step

Constants (measurements.py has each published figure and its use): the
per-op times are Intel's Loihi 2 profiling constants, the per-step floor
(barrier), a chip's static power and its per-step dynamic overhead are
fitted to a measured two-neuron network on one Loihi 2 (NECOTIS 2025), the
router and memory rates and the per-op energy scale to Hala Point's totals;
what nothing public pins down keeps a Loihi 1 figure or is assumed, and
says so. Everything is a model, not a measurement.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable

from s4dc.targets.loihi2 import measurements as M

DAVIES = "Davies 2018, Table 2"
FRADY = "Frady 2020"
SOURCES = dict(M.SOURCES)


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


# -- Loihi 1 per-operation figures (Davies 2018): energy proportions, speed-up check --
L1_T_SYNOP, L1_T_NEURON = 3.5e-9, 8.4e-9
L1_E_SYNOP, L1_E_NEURON, L1_E_SPIKE, L1_E_HOP_X, L1_E_HOP_Y = 23.6e-12, 81e-12, 1.7e-12, 3.0e-12, 4.0e-12
L1_P_STATIC_CHIP = 3.34 / 32   # Frady 2020 Table 1: 3.34 W static over 32 chips
HP_CORES_PER_CHIP = M.HP_CORES / M.HP_CHIPS

# -- time per op: Intel's Loihi 2 profiling constants; rates: Hala Point per core -----
T_SYNOP = Figure("T_synop", M.point("lava_t_synop").value, "s", "time per synaptic op in a core",
                 "published: Intel's lava-dl Loihi 2 profiling constant, 0.66 ns per synaptic op (N3B3)")
T_DEND = Figure("T_dend", M.point("lava_t_neuron").value, "s", "time per neuron update (DendOp) in a core",
                "published: Intel's lava-dl Loihi 2 profiling constant, 4 ns per neuron op")
T_SYNMEM = Figure("T_synmem", 1.0 / M.point("hp_memory_rate").value, "s", "time per byte of synaptic memory read",
                  "fitted to Hala Point: 16 PB/s over 140,544 cores (a peak rate)")
T_BIT = Figure("T_bit", 1.0 / M.point("hp_noc_rate").value, "s", "time per message bit through a core's router",
               "fitted to Hala Point: 3.5 PB/s inter-core over 140,544 cores (a peak rate)")
PACKET_BITS = Figure("packet_bits", 32, "bit", "bits a graded-spike message occupies on the mesh",
                     "reference.md: up to 32-bit packets, 24-bit payload", assumed=True)
STATE_DENDOPS = Figure("state_dendops", 2, "DendOps", "neuron updates per S4D state per step (a complex state: "
                       "real and imaginary part)", "assumed", assumed=True)
UNIT_DENDOPS = Figure("unit_dendops", 1, "DendOps", "neuron updates per sigma-delta unit per step (Intel's "
                      "profiling script counts 2 microcode passes for lava's sdn_relu; not applied)", "assumed",
                      assumed=True)
SYNMEM_BYTES_PER_SYNOP = Figure("synmem_bytes_per_synop", 1, "B", "synaptic memory read per synaptic op "
                                "(an 8-bit weight)", "assumed", assumed=True)
P_CORE = Figure("P_static_core", L1_P_STATIC_CHIP / 128, "W", "static power added per neurocore in use",
                "Frady 2020 Table 1 (Loihi 1: 104 mW per chip / 128)", assumed=True)


def dendops(neurons: float, state_neurons: float) -> float:
    return (neurons - state_neurons) * UNIT_DENDOPS.value + state_neurons * STATE_DENDOPS.value


def core_time(synops: float, neurons: float, state_neurons: float) -> dict[str, float]:
    """One core's time per step by term; its time is the largest."""
    return {"dendops_s": dendops(neurons, state_neurons) * T_DEND.value, "synops_s": synops * T_SYNOP.value,
            "synmem_s": synops * SYNMEM_BYTES_PER_SYNOP.value * T_SYNMEM.value}


def _busiest(parts: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, float, str]:
    """The slowest part, its time per step and the term that sets it."""
    busiest, t_core, term = None, 0.0, "dendops_s"
    for p in parts:
        t = core_time(float(p["synops"]), p["neurons"], p.get("state_neurons", 0))
        k = max(t, key=lambda name: t[name])
        if t[k] > t_core:
            busiest, t_core, term = p, t[k], k
    return busiest, t_core, term


def _work_time(w: dict[str, Any]) -> float:
    """A measured workload's time per step before the barrier (measurements.py)."""
    return max(_busiest(w["parts"])[1], w["max_router_load"] * PACKET_BITS.value * T_BIT.value)


def _fit_runs() -> list[M.Point]:
    """The NECOTIS runs the per-step floor is fitted to (one point per run)."""
    return [p for p in M.necotis("fit") if p.quantity == "time_per_step_s"]


def _diameter(chips: int) -> int:
    from s4dc.targets.loihi2.hardware import load_spec

    cols, rows = load_spec({"chips": chips}).grid
    return (min(chips, cols) - 1) + (math.ceil(chips / cols) - 1)


# -- the per-step floor: fitted to the measured two-neuron runs (25 Hz) --------------
T_BARRIER_CHIP = Figure("T_barrier_chip", statistics.fmean(p.value - _work_time(p.workload) for p in _fit_runs()),
                        "s", "per-step floor on one chip: barrier and lava's per-step management",
                        "fitted to NECOTIS 2025: time per step of a two-neuron network on one Loihi 2 (25 Hz runs) "
                        "less its modelled work")
KP_DIAMETER = _diameter(M.KAPOHO_POINT_CHIPS)
T_BARRIER_CHIP_HOP = Figure("T_barrier_chip_hop", (M.LAVA_T_BARRIER_KP - T_BARRIER_CHIP.value) / KP_DIAMETER, "s",
                            "added per-step floor per chip of chip-grid diameter (assumed linear)",
                            f"fitted to Intel's lava-dl profiling constant: 10 us per barrier on an 8-chip Kapoho "
                            f"Point (chip grid diameter {KP_DIAMETER}, assumed)")
P_CHIP = Figure("P_static_chip", statistics.fmean(p.workload["static_power_w"] for p in _fit_runs())
                - M.NECOTIS_CORES * P_CORE.value, "W", "static power of a chip in use (its rails, whatever its "
                "cores do)", f"fitted to NECOTIS 2025: measured static power of one Loihi 2 running two neurons "
                f"(25 Hz runs) less {M.NECOTIS_CORES} cores x P_static_core")


def _energy_scale() -> float:
    """Scale on Loihi 1's per-op energies so that a chip at Hala Point's
    published full rates draws Hala Point's maximum power per chip, static
    (P_chip and every core's P_core) included."""
    per_core = L1_E_SYNOP * M.HP_SYNOPS_PER_S / M.HP_CORES + L1_E_NEURON * M.HP_NEURON_OPS_PER_S / M.HP_CORES
    dynamic = M.point("hp_chip_power").value - P_CHIP.value - HP_CORES_PER_CHIP * P_CORE.value
    return dynamic / (HP_CORES_PER_CHIP * per_core)


ENERGY_SCALE = _energy_scale()
_FIT_E = (f"fitted to Hala Point's 2,600 W over 1,152 chips at its full rates: Loihi 1 figure x "
          f"{ENERGY_SCALE:.4f}")
E_SYNOP = Figure("E_synop", L1_E_SYNOP * ENERGY_SCALE, "J", "energy per synaptic op", _FIT_E)
E_DEND = Figure("E_dend", L1_E_NEURON * ENERGY_SCALE, "J", "energy per neuron update (DendOp)", _FIT_E)
E_SPIKE = Figure("E_spike", L1_E_SPIKE * ENERGY_SCALE, "J", "energy per message delivered", _FIT_E)
E_HOP_X = Figure("E_hop_x", L1_E_HOP_X * ENERGY_SCALE, "J", "energy per message per mesh link along x", _FIT_E)
E_HOP_Y = Figure("E_hop_y", L1_E_HOP_Y * ENERGY_SCALE, "J", "energy per message per mesh link along y", _FIT_E)
CHIP_LINK = Figure("chip_link_factor", 0.0, "x hop", "a chip-to-chip link costs the spec's chip_link_cost / "
                   "hop_cost times an x hop, in energy and router bits", "no public figure; placement.json spec",
                   assumed=True)


def chip_link_factor(spec: dict[str, Any]) -> float:
    hop = float(spec.get("hop_cost", 1.0) or 1.0)
    return float(spec.get("chip_link_cost", 16.0)) / hop


def _message_energy(routes: list[dict[str, Any]], k: float) -> tuple[float, float]:
    """Messages per step and their energy along the given routes."""
    e_msg = msgs = 0.0
    for r in routes:
        m = float(r["messages"])
        xs, ys = r["x_hops"] - r["chip_x"], r["y_hops"] - r["chip_y"]
        msgs += m
        e_msg += m * (E_SPIKE.value + xs * E_HOP_X.value + ys * E_HOP_Y.value
                      + (r["chip_x"] + r["chip_y"]) * k * E_HOP_X.value)
    return msgs, e_msg


def _ops_energy(w: dict[str, Any]) -> float:
    """A measured workload's synaptic, neuron and message energy per step."""
    parts = w["parts"]
    return (sum(float(p["synops"]) for p in parts) * E_SYNOP.value
            + sum(dendops(p["neurons"], p.get("state_neurons", 0)) for p in parts) * E_DEND.value
            + _message_energy(w["routes"], 1.0)[1])


E_STEP = Figure("E_step_chip", statistics.fmean(p.workload["dynamic_energy_per_step_j"] - _ops_energy(p.workload)
                                                for p in _fit_runs()), "J",
                "dynamic energy per step per chip in use beyond the ops (barrier, management)",
                "fitted to NECOTIS 2025: measured dynamic energy per step of a two-neuron network on one Loihi 2 "
                "(25 Hz runs) less its modelled ops")
FIGURES = (T_SYNOP, T_DEND, T_SYNMEM, T_BIT, T_BARRIER_CHIP, T_BARRIER_CHIP_HOP, PACKET_BITS, STATE_DENDOPS,
           UNIT_DENDOPS, SYNMEM_BYTES_PER_SYNOP, E_SYNOP, E_DEND, E_SPIKE, E_HOP_X, E_HOP_Y, E_STEP, P_CHIP, P_CORE,
           CHIP_LINK)

ASSUMPTIONS = (
    "Time per step follows Timcheck 2026's max-affine structure; its constants were not retrievable, so the "
    "per-op times are Intel's Loihi 2 profiling constants (0.66 ns per synaptic op, 4 ns per neuron op) and the "
    "router and memory times Hala Point's published rates per core (best-case throughputs).",
    "The per-step floor (1.16 us on one chip), a chip's static power (0.21 W) and its per-step dynamic overhead "
    "are fitted to one measured two-neuron network on one Loihi 2 (NECOTIS 2025); the floor's growth with "
    "chips to Intel's 10 us on an 8-chip Kapoho Point, assumed linear in the chip-grid diameter.",
    "Per-op energies keep Loihi 1's proportions (Davies 2018) with one scale fitted to Hala Point's maximum "
    "power: an upper bound on Loihi 2's per-op energy. No per-op energy of Loihi 2 was found.",
    "A sigma-delta unit is one neuron update per step; an S4D state two. Every on-chip neuron updates every "
    "step. Synaptic ops come from the messages actually sent (activity measured on the calibration set when "
    "compiled; 1.0 otherwise) times the synapses each reaches.",
    "Static power: every chip in use draws P_static_chip whatever its cores do, each core in use adds Loihi 1's "
    "per-core share (an assumption); unused chips are taken as off.",
    "Busiest router: the messages it injects, forwards and delivers x 32-bit packets. Route latency is not "
    "modelled (Timcheck's model has none); chip-to-chip links count chip_link_cost / hop_cost hops.",
    "Latency per token = pipeline depth x time per step: each synapse stage adds one step, as lava's Dense "
    "(1 per affine, 2 per S4D layer, 1 per add or ReLU along the longest path).",
    "Host I/O (encoding the input, reading outputs) and the host's readout are not counted.",
)


class _Stages:
    """Synapse stages a layer of each op adds (lava's Dense/Sparse buffer one
    step; docs/lava.md): the op's `synapse_stages` trait (s4dc.ir.ops)."""

    def get(self, op: str, default: int = 0) -> int:
        from s4dc.ir.ops import OPS

        d = OPS.get(op)
        return d.synapse_stages if d is not None else default


STAGES = _Stages()


def depths(layers: Iterable[tuple[str, str, list[str], str]]) -> dict[str, int]:
    """Synapse stages from the input to each layer's output; layers given as
    (name, op, input tensors, output tensor) in graph order."""
    by_out: dict[str, int] = {}
    out: dict[str, int] = {}
    for name, op, inputs, output in layers:
        d = max((by_out.get(t, 0) for t in inputs), default=0) + STAGES.get(op, 0)
        out[name] = d
        by_out[output] = d
    return out


def figures(spec: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The constants as JSON, the chip-link factor filled in from the spec."""
    out = []
    for f in FIGURES:
        d = f.to_json()
        if f is CHIP_LINK:
            d["value"] = chip_link_factor(spec or {})
        out.append(d)
    return out


def barrier_time(chip_grid_diameter: int) -> float:
    return T_BARRIER_CHIP.value + T_BARRIER_CHIP_HOP.value * max(0, chip_grid_diameter)


def estimate(parts: list[dict[str, Any]], routes: list[dict[str, Any]], spec: dict[str, Any],
             max_router_load: float, depth_steps: int, chips_used: int, chip_grid_diameter: int) -> dict[str, Any]:
    """One placement's cost per token.

    parts: per part `synops` (synaptic ops per step, internal ones included), `neurons`,
    `state_neurons`; routes: per edge `messages` (per step), `x_hops`, `y_hops` and of those,
    `chip_x`, `chip_y` crossing a chip boundary. max_router_load: messages per step through the
    busiest router."""
    synops = sum(float(p["synops"]) for p in parts)
    dops = sum(dendops(p["neurons"], p.get("state_neurons", 0)) for p in parts)
    msgs, e_msg = _message_energy(routes, chip_link_factor(spec))
    return _finish(parts, synops, dops, msgs, e_msg, max_router_load, depth_steps, len(parts), max(1, chips_used),
                   chip_grid_diameter)


def _finish(parts: list[dict[str, Any]], synops: float, dops: float, msgs: float, e_msg: float,
            router_msgs: float, depth_steps: int, cores: int, chips: int, chip_grid_diameter: int) -> dict[str, Any]:
    busiest, t_core, term = _busiest(parts)
    t_noc = router_msgs * PACKET_BITS.value * T_BIT.value
    t_bar = barrier_time(chip_grid_diameter)
    t_step = max(t_core, t_noc) + t_bar
    e_syn, e_neu, e_step = synops * E_SYNOP.value, dops * E_DEND.value, chips * E_STEP.value
    e_static = (chips * P_CHIP.value + cores * P_CORE.value) * t_step
    dynamic = e_syn + e_neu + e_msg + e_step
    bound = "messages" if t_noc > t_core else {"dendops_s": "neuron updates", "synops_s": "synaptic ops",
                                                 "synmem_s": "synaptic memory"}[term]
    return {
        "time_per_step_s": t_step, "busiest_core_s": t_core,
        "busiest_part": busiest.get("id") if busiest else None,
        "messages_s": t_noc, "barrier_s": t_bar, "bound_by": bound, "depth_steps": depth_steps,
        "latency_per_token_s": depth_steps * t_step,
        "tokens_per_s": (1.0 / t_step) if t_step > 0 else math.inf,
        "synops_per_step": synops, "neuron_updates_per_step": dops, "messages_per_step": msgs,
        "energy_synops_j": e_syn, "energy_neurons_j": e_neu, "energy_messages_j": e_msg, "energy_step_j": e_step,
        "energy_dynamic_j": dynamic, "energy_static_j": e_static, "energy_per_token_j": dynamic + e_static,
        "cores": cores, "chips": chips,
    }


def estimate_unplaced(parts: list[dict[str, Any]], edges: list[tuple[int, int, float]], spec: dict[str, Any],
                      depth_steps: int) -> dict[str, Any]:
    """A partitioning's cost per token before placement, to compare splits:
    routes are not known yet, so every message is taken to travel
    `expected_hops(n)` links (half along x, half along y), a message between
    parts whose first-come chips differ crosses one chip link, and the
    busiest router carries the most messages any one part sends and
    receives. place() then fixes the routes; the report costs those."""
    n = len(parts)
    cpc = int(spec.get("cores_per_chip", 128))
    k = chip_link_factor(spec)
    h = expected_hops(min(n, cpc))
    load = [0.0] * n
    msgs = e_msg = 0.0
    for a, b, m in edges:
        msgs += m
        load[a] += m
        load[b] += m
        chip = a // cpc != b // cpc
        e_msg += m * (E_SPIKE.value + h / 2 * (E_HOP_X.value + E_HOP_Y.value) + (k * E_HOP_X.value if chip else 0))
    chips = max(1, math.ceil(n / cpc))
    cols = max(1, math.ceil(math.sqrt(chips)))
    diam = (min(chips, cols) - 1) + (math.ceil(chips / cols) - 1)
    synops = sum(float(p["synops"]) for p in parts)
    dops = sum(dendops(p["neurons"], p.get("state_neurons", 0)) for p in parts)
    return _finish(parts, synops, dops, msgs, e_msg, max(load, default=0.0), depth_steps, n, chips, diam)


def expected_hops(n: int) -> float:
    """Mean links a message crosses among n compactly placed cores (assumed:
    1 + sqrt(n) / 3; the mean Manhattan distance in a sqrt(n) square is
    2 sqrt(n) / 3, and placement keeps talking parts closer than that)."""
    return 1.0 + math.sqrt(max(n, 1)) / 3.0


def workload_estimate(w: dict[str, Any]) -> dict[str, Any]:
    """The cost model's estimate of a measured workload (measurements.py)."""
    return estimate(w["parts"], w["routes"], {}, w["max_router_load"], w["depth_steps"], w["chips_used"],
                    w["chip_grid_diameter"])


def modelled(point: M.Point) -> float | None:
    """What the fitted model gives for a published point (None: not scored)."""
    if point.workload:
        e = workload_estimate(point.workload)
        return {"time_per_step_s": e["time_per_step_s"], "energy_per_step_j": e["energy_per_token_j"]}[point.quantity]
    hp = {"hp_synop_rate": lambda: 1.0 / core_time(1.0, 0, 0)["synops_s"],
          "hp_neuron_rate": lambda: 1.0 / core_time(0.0, 1, 0)["dendops_s"],
          "hp_noc_rate": lambda: 1.0 / T_BIT.value,
          "hp_memory_rate": lambda: 1.0 / T_SYNMEM.value,
          "hp_chip_power": lambda: P_CHIP.value + HP_CORES_PER_CHIP * (
              E_SYNOP.value * M.HP_SYNOPS_PER_S / M.HP_CORES + E_DEND.value * M.HP_NEURON_OPS_PER_S / M.HP_CORES
              + P_CORE.value),
          "hp_energy_per_synop": lambda: E_SYNOP.value,
          "hp_static_power": lambda: P_CHIP.value + HP_CORES_PER_CHIP * P_CORE.value,
          "lava_t_synop": lambda: T_SYNOP.value,
          "lava_t_neuron": lambda: T_DEND.value,
          "lava_barrier_kp": lambda: barrier_time(KP_DIAMETER),
          "brief_speedup_synop": lambda: L1_T_SYNOP / T_SYNOP.value,
          "brief_speedup_neuron": lambda: L1_T_NEURON / T_DEND.value,
          # neuron updates and a one-chip floor alone: a lower bound
          "hp_realtime": lambda: 1.15e9 / M.HP_CORES * T_DEND.value + barrier_time(0)}
    f = hp.get(point.name)
    return f() if f is not None else None


def error(point: M.Point) -> float | None:
    """Relative error of the model on a point (None: not scored, or a bound)."""
    m = modelled(point)
    if m is None or point.use in ("bound", "not scored"):
        return None
    return abs(m - point.value) / point.value


def within_bound(point: M.Point) -> bool:
    """A bound holds: every published bound is an upper bound on the modelled figure."""
    m = modelled(point)
    return m is not None and m <= point.value


def held_out_median() -> float:
    """Median relative error over every held-out comparison."""
    return statistics.median(e for p in M.POINTS if p.use == "held-out" and (e := error(p)) is not None)


def held_out_by_source() -> dict[str, float]:
    """Median relative error of the held-out comparisons of each source."""
    out: dict[str, list[float]] = {}
    for p in M.POINTS:
        if p.use == "held-out" and (e := error(p)) is not None:
            out.setdefault(p.source, []).append(e)
    return {k: statistics.median(v) for k, v in out.items()}


__all__ = ["ASSUMPTIONS", "E_STEP", "FIGURES", "Figure", "P_CHIP", "SOURCES", "STAGES", "T_BARRIER_CHIP_HOP",
           "barrier_time", "core_time", "depths", "error",
           "estimate", "estimate_unplaced", "expected_hops", "figures", "held_out_by_source", "held_out_median",
           "modelled", "within_bound", "workload_estimate"]
