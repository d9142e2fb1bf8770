"""Published Loihi 2 figures the cost model is fitted to or checked against
(docs/loihi2_measurements.md has the table with its sources).

Only figures found in a source are here; each says where it comes from and
how the cost model uses it: `fit` (a constant is derived from it),
`held-out` (compared with what the fitted model predicts, never used to
fit), `bound` (the model must stay below it), or `not scored` (published,
but something needed to turn it into a model prediction is not: the reason
is given). No per-token latency or energy of a network of known size was
found in a retrievable form (the seed paper's and Shrestha 2024's tables
were not), so no point of that kind is here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SOURCES = {
    "Intel 2024 (Hala Point)": "Intel / Sandia, Hala Point announcement, 17 April 2024 (as reported by eeNews "
                               "Europe, 'Intel breaks a billion neurons for world's largest neuromorphic computing "
                               "system'): 1,152 Loihi 2 chips, 140,544 neurocores, 2,600 W maximum, over 380 "
                               "trillion 8-bit synapses and 240 trillion neuron operations per second, 16 PB/s "
                               "memory, 3.5 PB/s inter-core and 5 TB/s inter-chip bandwidth, over 15 TOPS/W on "
                               "conventional DNNs, 1.15 billion neurons 20x faster than a human brain",
    "Intel 2021 (Loihi 2 brief)": "Intel Labs technology brief 'Taking Neuromorphic Computing to the Next Level "
                                  "with Loihi 2' (2021): Loihi 2 outperforms its predecessor by up to 10x",
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
                  "2020: 3.34 W static over a 32-chip Loihi 1 board (Table 1), barrier times of 768-chip "
                  "systems (sec. 4.3)",
}
HALA = "Intel 2024 (Hala Point)"

# Hala Point, as published.
HP_CHIPS = 1152
HP_CORES = 140_544
HP_POWER_MAX_W = 2600.0
HP_SYNOPS_PER_S = 380e12
HP_NEURON_OPS_PER_S = 240e12
HP_MEMORY_BYTES_PER_S = 16e15
HP_INTERCORE_BYTES_PER_S = 3.5e15
HP_INTERCHIP_BYTES_PER_S = 5e12
LOIHI2_SPEEDUP_MAX = 10.0   # "up to 10x" over Loihi 1


@dataclass(frozen=True)
class Point:
    """One published figure and how the model is compared with it."""

    name: str
    what: str
    value: float
    unit: str
    source: str
    where: str
    use: str           # fit | held-out | bound | not scored
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "what": self.what, "value": self.value, "unit": self.unit,
                "source": self.source, "where": self.where, "use": self.use, "note": self.note}


POINTS: tuple[Point, ...] = (
    Point("hp_synop_rate", "synaptic ops per second per neurocore at full load", HP_SYNOPS_PER_S / HP_CORES,
          "1/s", HALA, "380e12 8-bit synapses/s over 140,544 cores", "fit", "gives T_synop"),
    Point("hp_neuron_rate", "neuron updates per second per neurocore at full load", HP_NEURON_OPS_PER_S / HP_CORES,
          "1/s", HALA, "240e12 neuron ops/s over 140,544 cores", "fit", "gives T_dend"),
    Point("hp_noc_rate", "network-on-chip bits per second per neurocore", 8 * HP_INTERCORE_BYTES_PER_S / HP_CORES,
          "bit/s", HALA, "3.5 PB/s inter-core over 140,544 cores", "fit", "gives T_bit"),
    Point("hp_memory_rate", "synaptic memory bytes per second per neurocore", HP_MEMORY_BYTES_PER_S / HP_CORES,
          "B/s", HALA, "16 PB/s over 140,544 cores", "fit", "gives T_synmem"),
    Point("hp_chip_power", "power per chip at full load", HP_POWER_MAX_W / HP_CHIPS, "W", HALA,
          "2,600 W maximum over 1,152 chips", "fit",
          "gives the energy scale (Loihi 1 per-op energy proportions kept)"),
    Point("hp_energy_per_synop", "energy per synaptic op, upper bound (all power spent on synaptic ops)",
          HP_POWER_MAX_W / HP_SYNOPS_PER_S, "J", HALA, "2,600 W / 380e12 synapses/s", "bound",
          "the fitted E_synop must not exceed it"),
    Point("speedup_synop", "Loihi 2 over Loihi 1, time per synaptic op", LOIHI2_SPEEDUP_MAX, "x",
          "Intel 2021 (Loihi 2 brief)", "'up to 10x'", "held-out",
          "modelled: Davies 2018 T_synop (3.5 ns) / fitted T_synop; the brief gives a maximum"),
    Point("speedup_neuron", "Loihi 2 over Loihi 1, time per neuron update", LOIHI2_SPEEDUP_MAX, "x",
          "Intel 2021 (Loihi 2 brief)", "'up to 10x'", "held-out",
          "modelled: Davies 2018 T_neuron (8.4 ns) / fitted T_dend; the brief gives a maximum"),
    Point("hp_realtime", "time per step, 1.15e9 neurons (8,182 per core) at 20x biological real time", 50e-6, "s",
          HALA, "'20 times faster than a human brain'", "not scored",
          "assumes a 1 ms biological step; the spike activity (synaptic ops) is not stated, so the model's "
          "neuron-update lower bound is compared only as a lower bound"),
    Point("hp_ops_per_watt", "8-bit operations per joule on conventional DNNs", 15e12, "1/J", HALA,
          "'over 15 TOPS/W'", "not scored",
          "what one 'operation' is (dense-equivalent, with sparsity) is not stated"),
    Point("meyer_token_ratios", "energy / latency per token vs a recurrent S4D on Jetson Orin Nano", 1000.0, "x",
          "Meyer 2024", "abstract: 1000x energy, 75x latency", "not scored",
          "the absolute Loihi 2 and Jetson figures (the paper's tables) were not retrievable here"),
    Point("pierro_ratios", "energy / latency vs a dense S5 on Jetson Orin Nano", 149.0, "x", "Pierro 2025",
          "abstract: 149x energy, 42x latency", "not scored",
          "the absolute figures were not retrievable here"),
)


def point(name: str) -> Point:
    return next(p for p in POINTS if p.name == name)


__all__ = ["HALA", "POINTS", "Point", "SOURCES", "point"]
