"""The Loihi 2 cost model (targets/loihi2/cost.py): its constants follow from
the published figures (measurements.py), fitted on a part of them and
checked on the rest (the held-out median the docs state is the computed
one), its arithmetic on hand-sized workloads, and its structure (the
slowest core or the busiest router sets the step). Measured-vs-modelled
figures are printed by benchmarks/cost.py."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from s4dc.targets.loihi2 import cost
from s4dc.targets.loihi2 import measurements as M

SPEC = {"hop_cost": 1.0, "chip_link_cost": 16.0, "cores_per_chip": 128}
DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_time_constants_follow_their_published_figures():
    # per-op times: Intel's lava-dl profiling constants as published; rates: Hala Point per core
    assert cost.T_SYNOP.value == 0.66e-9 and cost.T_DEND.value == 4e-9
    assert cost.T_BIT.value == 140_544 / (8 * 3.5e15)
    assert cost.T_SYNMEM.value == 140_544 / 16e15
    for p in M.POINTS:
        if p.use == "fit" and not p.workload:   # the fitted model reproduces its fit points
            assert cost.modelled(p) == pytest.approx(p.value, rel=1e-12), p.name
    # the floor grows with the chip-grid diameter to Intel's 10 us on 8 chips (a 3 x 3 grid: diameter 4)
    assert cost.KP_DIAMETER == 4
    assert cost.barrier_time(4) == pytest.approx(10e-6, rel=1e-12)


def test_per_step_floor_is_fitted_to_the_25hz_runs_only():
    runs = {(hz, d): v for (hz, d), v in M.NECOTIS_RUNS.items()}
    fit = [v for (hz, _), v in runs.items() if hz == 25]
    assert len(fit) == 6 and len(runs) == 18
    # the model's time and energy per step of the 2-neuron network equal the fit runs' means
    t_fit = sum(v[0] for v in fit) / 6 / 1e7
    e_fit = sum(v[1] for v in fit) / 6 / 1e7
    wl = M.necotis_workload(25)
    e = cost.workload_estimate(wl)
    assert e["time_per_step_s"] == pytest.approx(t_fit, rel=1e-12)
    assert e["energy_per_token_j"] == pytest.approx(e_fit, rel=2e-4)   # static x modelled (not measured) time
    assert cost.P_CHIP.value + 2 * cost.P_CORE.value == pytest.approx(sum(v[3] for v in fit) / 6, rel=1e-12)
    # its work is one neuron update (4 ns): the rest of the 1.16 us step is the floor
    assert e["busiest_core_s"] == 4e-9 and e["bound_by"] == "neuron updates"
    assert cost.T_BARRIER_CHIP.value == pytest.approx(t_fit - 4e-9, rel=1e-12)
    # held-out runs (50, 100 Hz) only change the activity: 4x the spikes moves the model by < 0.001%
    e100 = cost.workload_estimate(M.necotis_workload(100))
    assert e100["time_per_step_s"] == e["time_per_step_s"]
    assert 0 < e100["energy_per_token_j"] - e["energy_per_token_j"] < 1e-5 * e["energy_per_token_j"]
    for p in M.necotis("held-out"):
        assert p.name.startswith(("necotis_50hz", "necotis_100hz")) and p.workload


def test_energy_scale_meets_hala_point_power_and_every_bound_holds():
    cores = 140_544 / 1152
    power = cost.P_CHIP.value + cores * (cost.E_SYNOP.value * 380e12 / 140_544
                                         + cost.E_DEND.value * 240e12 / 140_544 + cost.P_CORE.value)
    assert power == pytest.approx(2600 / 1152, rel=1e-12)
    # Loihi 1's proportions kept: one scale on every per-op energy
    assert cost.E_DEND.value / cost.E_SYNOP.value == pytest.approx(81 / 23.6)
    assert cost.E_HOP_Y.value / cost.E_HOP_X.value == pytest.approx(4 / 3)
    bound = M.point("hp_energy_per_synop")
    assert bound.use == "bound" and cost.E_SYNOP.value < bound.value == 2600 / 380e12
    assert 0 < cost.ENERGY_SCALE < 1   # Loihi 2 spends less per op than Loihi 1
    bounds = [p for p in M.POINTS if p.use == "bound"]
    assert {p.name for p in bounds} == {"hp_synop_rate", "hp_neuron_rate", "hp_energy_per_synop", "hp_static_power"}
    assert all(cost.within_bound(p) for p in bounds)


def test_every_constant_has_a_source_and_every_point_a_use():
    for f in cost.FIGURES:
        assert f.source and f.what, f.name
        assert f.assumed or f.source.startswith(("fitted to", "published:")), f.name
    assert {p.use for p in M.POINTS} == {"fit", "held-out", "bound", "not scored"}
    for p in M.POINTS:
        assert p.source in M.SOURCES and p.where
        assert (cost.modelled(p) is None) == (p.use == "not scored" and p.name != "hp_realtime"), p.name
    assert [cost.modelled(M.point(n)) for n in ("brief_speedup_synop", "brief_speedup_neuron")] == \
        [3.5e-9 / cost.T_SYNOP.value, 8.4e-9 / cost.T_DEND.value]


def _stated_median(doc: str) -> float:
    """The held-out median the doc states (as 'median relative error **X%**')."""
    text = (DOCS / doc).read_text()
    m = re.search(r"held-out median relative error:? \*\*([0-9.]+)%\*\*", text, re.IGNORECASE)
    assert m, f"{doc} states no held-out median"
    return float(m.group(1)) / 100


def test_held_out_median_is_computed_and_stated():
    errs = [cost.error(p) for p in M.POINTS if p.use == "held-out"]
    assert len(errs) == 26 and all(e is not None for e in errs)
    med = cost.held_out_median()
    assert med == sorted(errs)[12] / 2 + sorted(errs)[13] / 2
    assert med <= 0.30
    by = cost.held_out_by_source()
    assert set(by) == {M.NECOTIS, M.BRIEF}
    assert by[M.BRIEF] == pytest.approx((abs(3.5 / 0.66 - 5) / 5 + abs(8.4 / 4 - 2) / 2) / 2)
    for doc in ("loihi2_measurements.md", "hardware_model.md"):   # the docs state what is computed
        assert _stated_median(doc) == pytest.approx(med, abs=5e-5), doc


def _part(i, synops, neurons, states=0):
    return {"id": i, "synops": synops, "neurons": neurons, "state_neurons": states}


def test_step_time_is_the_slowest_core_or_the_busiest_router_plus_barrier():
    # core 0: 4000 synops (2.64 us) vs 100 units (0.4 us); core 1: 64 states + 1 unit = 129 DendOps (0.52 us)
    parts = [_part(0, 4000, 100), _part(1, 10, 65, 64)]
    routes = [{"messages": 50, "x_hops": 2, "y_hops": 1, "chip_x": 0, "chip_y": 0}]
    e = cost.estimate(parts, routes, SPEC, max_router_load=50, depth_steps=3, chips_used=1, chip_grid_diameter=0)
    t_core = 4000 * cost.T_SYNOP.value
    assert e["busiest_core_s"] == pytest.approx(t_core) and e["busiest_part"] == 0
    assert e["bound_by"] == "synaptic ops"
    assert e["messages_s"] == pytest.approx(50 * 32 * cost.T_BIT.value)
    assert e["time_per_step_s"] == pytest.approx(t_core + cost.T_BARRIER_CHIP.value)
    assert e["latency_per_token_s"] == pytest.approx(3 * e["time_per_step_s"])
    dops = 100 + 1 + 64 * 2
    assert e["neuron_updates_per_step"] == dops
    e_msg = 50 * (cost.E_SPIKE.value + 2 * cost.E_HOP_X.value + cost.E_HOP_Y.value)
    assert e["energy_messages_j"] == pytest.approx(e_msg)
    assert e["energy_step_j"] == cost.E_STEP.value   # one chip
    assert e["energy_static_j"] == pytest.approx((cost.P_CHIP.value + 2 * cost.P_CORE.value) * e["time_per_step_s"])
    assert e["energy_per_token_j"] == pytest.approx(4010 * cost.E_SYNOP.value + dops * cost.E_DEND.value + e_msg
                                                    + cost.E_STEP.value + e["energy_static_j"])
    # a router carrying 100x the messages makes the step message-bound
    e2 = cost.estimate(parts, routes, SPEC, max_router_load=50_000, depth_steps=3, chips_used=1,
                       chip_grid_diameter=0)
    assert e2["bound_by"] == "messages"
    assert e2["time_per_step_s"] == pytest.approx(50_000 * 32 * cost.T_BIT.value + cost.T_BARRIER_CHIP.value)
    # a chip-to-chip link costs chip_link_cost / hop_cost x hops of energy; the barrier grows with the grid
    routes3 = [{"messages": 10, "x_hops": 3, "y_hops": 0, "chip_x": 1, "chip_y": 0}]
    e3 = cost.estimate(parts, routes3, SPEC, 10, 1, 2, 1)
    assert e3["energy_messages_j"] == pytest.approx(10 * (cost.E_SPIKE.value + 2 * cost.E_HOP_X.value
                                                          + 16 * cost.E_HOP_X.value))
    assert e3["barrier_s"] == pytest.approx(cost.T_BARRIER_CHIP.value + cost.T_BARRIER_CHIP_HOP.value)
    # two chips in use: each draws its static power and per-step overhead
    assert e3["energy_step_j"] == 2 * cost.E_STEP.value
    assert e3["energy_static_j"] == pytest.approx((2 * cost.P_CHIP.value + 2 * cost.P_CORE.value)
                                                  * e3["time_per_step_s"])


def test_unplaced_estimate_uses_expected_hops_and_first_come_chips():
    parts = [_part(i, 100, 10) for i in range(130)]
    edges = [(0, 1, 5.0), (127, 128, 2.0)]   # the second crosses from chip 0 to chip 1 in first-come order
    e = cost.estimate_unplaced(parts, edges, SPEC, depth_steps=2)
    h = cost.expected_hops(128)
    assert h == 1 + math.sqrt(128) / 3
    per = cost.E_SPIKE.value + h / 2 * (cost.E_HOP_X.value + cost.E_HOP_Y.value)
    assert e["energy_messages_j"] == pytest.approx(5 * per + 2 * (per + 16 * cost.E_HOP_X.value))
    assert e["messages_s"] == pytest.approx(5 * 32 * cost.T_BIT.value)   # parts 0 and 1 each see 5 messages
    assert e["barrier_s"] == pytest.approx(cost.T_BARRIER_CHIP.value + cost.T_BARRIER_CHIP_HOP.value)  # 2 chips
    assert e["cores"] == 130 and e["chips"] == 2
    assert e["energy_static_j"] == pytest.approx((2 * cost.P_CHIP.value + 130 * cost.P_CORE.value)
                                                 * e["time_per_step_s"])


def test_pipeline_depth_counts_synapse_stages():
    layers = [("in", "input", [], "x"), ("a", "qaffine", ["x"], "a"), ("s", "qssm", ["a"], "s"),
              ("r", "relu", ["s"], "r"), ("add", "qadd", ["r", "a"], "add"), ("o", "output", ["add"], "o")]
    assert cost.depths(layers) == {"in": 0, "a": 1, "s": 3, "r": 4, "add": 5, "o": 5}
