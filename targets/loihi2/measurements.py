"""Published Loihi 2 figures the cost model is fitted to or checked against
(docs/loihi2_measurements.md has the table with its sources).

Only figures found in a source are here; each says where it comes from and
how the cost model uses it: `fit` (a constant is derived from it),
`held-out` (compared with what the fitted model predicts, never used to
fit), `bound` (the model must stay on the right side of it), or
`not scored` (published, but something needed to turn it into a model
prediction is not: the reason is given).

The only measured time and energy per step of a Loihi 2 network of known
size found is a two-neuron network measured on an Oheo Gulch board
(NECOTIS 2025, 18 configurations): its 25 Hz runs fit the per-step floor
(barrier and management time, a chip's static power, the per-step dynamic
overhead), its 50 Hz and 100 Hz runs are held out. No per-token figure of a
larger network (the seed paper's tables, Shrestha 2024's) was retrievable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCES = {
    "Intel 2024 (Hala Point)": "Intel / Sandia, Hala Point announcement, 17 April 2024 (as reported by eeNews "
                               "Europe, 'Intel breaks a billion neurons for world's largest neuromorphic computing "
                               "system'): 1,152 Loihi 2 chips, 140,544 neurocores, 2,600 W maximum, over 380 "
                               "trillion 8-bit synapses and 240 trillion neuron operations per second, 16 PB/s "
                               "memory, 3.5 PB/s inter-core and 5 TB/s inter-chip bandwidth, over 15 TOPS/W on "
                               "conventional DNNs, 1.15 billion neurons 20x faster than a human brain",
    "Intel 2021 (Loihi 2 brief)": "Intel Labs technology brief 'Taking Neuromorphic Computing to the Next Level "
                                  "with Loihi 2' (2021): up to 10x over Loihi 1, '2x for simple neuron state "
                                  "updates', '5x for synaptic operations', '10x for spike generation', 'minimum "
                                  "chip-wide time steps under 200ns' (Loihi 1 measured on Nahuku-32, Loihi 2 on "
                                  "N3B1 silicon and pre-silicon simulation); the factors quoted from the brief in "
                                  "github.com/7abushahla/SANA-FE docs/loihi2-profile.md",
    "Intel lava-dl profiling": "Intel's YOLO-KP SDNN Loihi 2 benchmark script (lava-dl tutorial), public copy "
                               "github.com/mbrehove/lava-dl tutorials/lava/lib/dl/netx/yolo_kp/"
                               "benchmark_unthrottled.py @44f1fbb: 'time_per_syn_op = 0.66e-3  # 0.66ns # N3B3', "
                               "'time_per_neuron_op = 4e-3  # 4ns', 'time_per_barrier_sync = 10  # 10us' (core "
                               "time per step = the largest of the three), 'ucode_passes = 2  # 2 passes for "
                               "sdn_relu', PIO chip link 8 bit x 800 MHz, a remote graded spike 3 x 4 B "
                               "('67Mspike/s'); an 8-chip Kapoho Point system",
    "NECOTIS 2025": "S. Bahadi, NECOTIS (Universite de Sherbrooke), github.com/NECOTIS/TemporalLearningInRSNNs "
                    "loihi_experiment/ @40bae15 (delay.py, res.json, readme.md): two LIF neurons joined by one "
                    "synapse (lava Dense or DelayDense, weight 128; the source neuron's bias sets 25, 50 or 100 Hz "
                    "at 1 ms per step; delays 0-20 steps) on Oheo Gulch board ncl-ext-og-05 (one Loihi 2, N3B3, "
                    "lava-nc 0.10.0), 10^7 steps per run, lava's energy probe, mean of 100 runs per configuration",
    "Meyer 2024": "S. M. Meyer et al., 'A diagonal structured state space model on Loihi 2 for efficient "
                  "streaming sequence processing', arXiv 2409.15022 (abstract): token by token, about 1000x less "
                  "energy, 75x lower latency and 75x higher throughput than a recurrent S4D on a Jetson Orin Nano",
    "Pierro 2025": "A. Pierro et al., 'Accelerating linear recurrent neural networks for the edge with unstructured "
                   "sparsity', arXiv 2502.01330 / ICML 2025 (abstract): 42x lower latency and 149x lower energy "
                   "than a dense model on a Jetson Orin Nano",
    "Timcheck 2026": "J. Timcheck, A. Pierro, S. B. Shrestha, 'A compute and communication runtime model for Loihi "
                     "2', arXiv 2601.10035: a max-affine lower-bound time per step from neuron updates (DendOps), "
                     "synaptic ops, synaptic-memory reads and network-on-chip bits, plus a barrier, fitted to "
                     "microbenchmarks (r >= 0.97 against chip measurements); its constants were not retrievable",
    "Davies 2018": "M. Davies et al., 'Loihi: a neuromorphic manycore processor with on-chip learning', IEEE "
                   "Micro 38(1), 2018, Table 2 (Loihi 1, 14 nm, pre-silicon simulation consistent with silicon)",
    "Frady 2020": "E. P. Frady et al., 'Neuromorphic nearest-neighbor search using Intel's Pohoiki Springs', NICE "
                  "2020: 3.34 W static over a 32-chip Loihi 1 board (Table 1)",
}
HALA, BRIEF, LAVA_DL, NECOTIS = "Intel 2024 (Hala Point)", "Intel 2021 (Loihi 2 brief)", \
    "Intel lava-dl profiling", "NECOTIS 2025"

# Hala Point, as published.
HP_CHIPS = 1152
HP_CORES = 140_544
HP_POWER_MAX_W = 2600.0
HP_SYNOPS_PER_S = 380e12
HP_NEURON_OPS_PER_S = 240e12
HP_MEMORY_BYTES_PER_S = 16e15
HP_INTERCORE_BYTES_PER_S = 3.5e15

# Intel's profiling constants (lava-dl YOLO-KP benchmark), as published.
LAVA_T_SYNOP = 0.66e-9
LAVA_T_NEURON = 4e-9
LAVA_T_BARRIER_KP = 10e-6
KAPOHO_POINT_CHIPS = 8

# NECOTIS: (spike rate Hz, delay steps) -> mean over 100 runs of 10^7 steps of
# (total_time s, total_energy J, dynamic_energy J, static_power W), from res.json.
NECOTIS_STEPS = 10**7
NECOTIS_RUNS: dict[tuple[int, int], tuple[float, float, float, float]] = {
    (25, 0): (11.637382776475679, 2.7646187659818313, 0.26722025399517835, 0.21460215555555556),
    (25, 1): (11.638184906041616, 2.826042953855412, 0.3267961277986267, 0.21474454347826089),
    (25, 5): (11.636438821739914, 2.8319499003078157, 0.3336799263985207, 0.2146933043478261),
    (25, 10): (11.63877701160296, 2.8162455143240113, 0.3193646471406147, 0.2145314285714286),
    (25, 15): (11.632089881688183, 2.7883734493140966, 0.28922962279426684, 0.21484806382978727),
    (25, 20): (11.63921367506081, 2.8474222687681787, 0.35768908685702944, 0.213908),
    (50, 0): (11.639218619837314, 2.791203153174586, 0.3167534986598539, 0.21259630952380953),
    (50, 1): (11.642313649506487, 2.7494358978743034, 0.26885605164987547, 0.2130668780487805),
    (50, 5): (11.640988340765825, 2.8264872744324103, 0.3610635808176401, 0.21178833333333336),
    (50, 10): (11.636916828752666, 2.803495166631536, 0.3339501687460176, 0.21221627906976742),
    (50, 15): (11.641271884671509, 2.804722276019869, 0.3318192950015757, 0.21242555319148942),
    (50, 20): (11.637958311563231, 2.769688180798282, 0.2928864616315174, 0.21282138095238093),
    (100, 0): (11.643384501700206, 2.8204735848497426, 0.325827752621702, 0.2142557777777778),
    (100, 1): (11.644579857797337, 2.86354005692934, 0.3722696615964579, 0.21394302222222222),
    (100, 5): (11.640830179336929, 2.8883832985735824, 0.4058394030847404, 0.2132609090909091),
    (100, 10): (11.638984209340009, 2.915136838998649, 0.4281769966636473, 0.213675),
    (100, 15): (11.638816475277562, 2.9260960969066154, 0.44112143757743694, 0.2135071),
    (100, 20): (11.641290768276013, 2.878167060823241, 0.39075991901028945, 0.2136721489361702),
}
NECOTIS_FIT_RATE = 25   # the 25 Hz runs fit; 50 and 100 Hz are held out
NECOTIS_CORES = 2       # lava maps each of the two LIF processes to its own neurocore (assumed)


@dataclass(frozen=True)
class Point:
    """One published figure and how the model is compared with it. A point
    with a `workload` is a measured network: the cost model costs that
    workload (parts, routes, pipeline depth, cores, chips) and compares."""

    name: str
    what: str
    value: float
    unit: str
    source: str
    where: str
    use: str           # fit | held-out | bound | not scored
    note: str = ""
    quantity: str = ""   # for a workload: time_per_step_s | energy_per_step_j | static_power_w
    workload: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "what": self.what, "value": self.value, "unit": self.unit,
                "source": self.source, "where": self.where, "use": self.use, "note": self.note}


def necotis_workload(rate_hz: int) -> dict[str, Any]:
    """The NECOTIS network as the cost model takes it: the source neuron on
    one core, the target neuron with its synapse on another one link away;
    the source spikes rate / 1000 times per step (1 ms per step) and each
    spike is one message and one synaptic op. One synapse stage deep."""
    m = rate_hz / 1000.0
    return {"parts": [{"id": 0, "neurons": 1, "state_neurons": 0, "synops": 0.0},
                      {"id": 1, "neurons": 1, "state_neurons": 0, "synops": m}],
            "routes": [{"messages": m, "x_hops": 1, "y_hops": 0, "chip_x": 0, "chip_y": 0}],
            "max_router_load": m, "depth_steps": 1, "chips_used": 1, "chip_grid_diameter": 0}


def _necotis_points() -> list[Point]:
    out = []
    for (hz, delay), (t, e, e_dyn, p_static) in NECOTIS_RUNS.items():
        use = "fit" if hz == NECOTIS_FIT_RATE else "held-out"
        where = f"res.json['{hz}']['{delay}'], / 10^7 steps"
        wl = {**necotis_workload(hz), "dynamic_energy_per_step_j": e_dyn / NECOTIS_STEPS,
              "static_power_w": p_static}
        name = f"necotis_{hz}hz_d{delay}"
        out.append(Point(f"{name}_time", f"time per step (= latency per token, 1 synapse stage), 2 neurons, "
                         f"{hz} Hz, delay {delay}", t / NECOTIS_STEPS, "s", NECOTIS, "total_time " + where, use,
                         quantity="time_per_step_s", workload=wl))
        out.append(Point(f"{name}_energy", f"energy per step (= per token), 2 neurons, {hz} Hz, delay {delay}",
                         e / NECOTIS_STEPS, "J", NECOTIS, "total_energy " + where, use,
                         quantity="energy_per_step_j", workload=wl))
    return out


POINTS: tuple[Point, ...] = (
    Point("lava_t_synop", "time per synaptic op (N3B3)", LAVA_T_SYNOP, "s", LAVA_DL,
          "time_per_syn_op = 0.66e-3 (us)", "fit", "gives T_synop"),
    Point("lava_t_neuron", "time per neuron op", LAVA_T_NEURON, "s", LAVA_DL,
          "time_per_neuron_op = 4e-3 (us)", "fit", "gives T_dend"),
    Point("lava_barrier_kp", "time per barrier sync, 8-chip Kapoho Point", LAVA_T_BARRIER_KP, "s", LAVA_DL,
          "time_per_barrier_sync = 10 (us)", "fit",
          "gives T_barrier_chip_hop with T_barrier_chip from NECOTIS (the chip grid of 8 chips is assumed)"),
    Point("hp_noc_rate", "network-on-chip bits per second per neurocore", 8 * HP_INTERCORE_BYTES_PER_S / HP_CORES,
          "bit/s", HALA, "3.5 PB/s inter-core over 140,544 cores", "fit", "gives T_bit"),
    Point("hp_memory_rate", "synaptic memory bytes per second per neurocore", HP_MEMORY_BYTES_PER_S / HP_CORES,
          "B/s", HALA, "16 PB/s over 140,544 cores", "fit", "gives T_synmem"),
    Point("hp_chip_power", "power per chip at Hala Point's full rates", HP_POWER_MAX_W / HP_CHIPS, "W", HALA,
          "2,600 W maximum over 1,152 chips", "fit",
          "gives the per-op energy scale (Loihi 1 proportions kept), static power from NECOTIS"),
    *_necotis_points(),
    Point("brief_speedup_synop", "Loihi 2 over Loihi 1, time per synaptic op", 5.0, "x", BRIEF,
          "'5x for synaptic operations'", "held-out", "modelled: Davies 2018's 3.5 ns / fitted T_synop"),
    Point("brief_speedup_neuron", "Loihi 2 over Loihi 1, time per neuron update", 2.0, "x", BRIEF,
          "'2x for simple neuron state updates'", "held-out", "modelled: Davies 2018's 8.4 ns / fitted T_dend"),
    Point("hp_synop_rate", "synaptic ops per second per neurocore, peak", HP_SYNOPS_PER_S / HP_CORES, "1/s", HALA,
          "380e12 8-bit synapses/s over 140,544 cores", "bound",
          "a best-case rate: the model's 1 / T_synop must not exceed it"),
    Point("hp_neuron_rate", "neuron updates per second per neurocore, peak", HP_NEURON_OPS_PER_S / HP_CORES, "1/s",
          HALA, "240e12 neuron ops/s over 140,544 cores", "bound",
          "a best-case rate: the model's 1 / T_dend must not exceed it"),
    Point("hp_energy_per_synop", "energy per synaptic op, upper bound (all power spent on synaptic ops)",
          HP_POWER_MAX_W / HP_SYNOPS_PER_S, "J", HALA, "2,600 W / 380e12 synapses/s", "bound",
          "the fitted E_synop must not exceed it"),
    Point("hp_static_power", "power per chip, upper bound on its static power", HP_POWER_MAX_W / HP_CHIPS, "W",
          HALA, "2,600 W maximum over 1,152 chips", "bound",
          "the static power of a full chip (P_static_chip + 122 cores x P_static_core) must not exceed it"),
    Point("brief_min_step", "minimum chip-wide time step", 200e-9, "s", BRIEF, "'under 200ns'", "not scored",
          "a hardware minimum: the measured lava step on one chip (NECOTIS, 1.16 us) includes per-step "
          "management the brief's figure does not"),
    Point("brief_speedup_spike", "Loihi 2 over Loihi 1, spike generation", 10.0, "x", BRIEF,
          "'10x for spike generation'", "not scored", "the model has no spike-generation term"),
    Point("hp_realtime", "time per step, 1.15e9 neurons (8,182 per core) at 20x biological real time", 50e-6, "s",
          HALA, "'20 times faster than a human brain'", "not scored",
          "assumes a 1 ms biological step; the spike activity (synaptic ops) and Hala Point's barrier are not "
          "stated; modelled: neuron updates and a one-chip barrier only, a lower bound"),
    Point("hp_ops_per_watt", "8-bit operations per joule on conventional DNNs", 15e12, "1/J", HALA,
          "'over 15 TOPS/W'", "not scored", "what one 'operation' is (dense-equivalent, with sparsity) is not stated"),
    Point("meyer_token_ratios", "energy / latency per token vs a recurrent S4D on Jetson Orin Nano", 1000.0, "x",
          "Meyer 2024", "abstract: 1000x energy, 75x latency", "not scored",
          "the absolute Loihi 2 and Jetson figures (the paper's tables) were not retrievable here"),
    Point("pierro_ratios", "energy / latency vs a dense S5 on Jetson Orin Nano", 149.0, "x", "Pierro 2025",
          "abstract: 149x energy, 42x latency", "not scored", "the absolute figures were not retrievable here"),
)


def point(name: str) -> Point:
    return next(p for p in POINTS if p.name == name)


def necotis(use: str) -> list[Point]:
    """The NECOTIS points of one use (fit or held-out)."""
    return [p for p in POINTS if p.source == NECOTIS and p.use == use]


__all__ = ["BRIEF", "HALA", "LAVA_DL", "NECOTIS", "NECOTIS_RUNS", "POINTS", "Point", "SOURCES", "necotis",
           "necotis_workload", "point"]
