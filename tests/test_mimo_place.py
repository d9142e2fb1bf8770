"""Partition and placement of MIMO layers: modes split over cores with dense
fan-in and fan-out, the traffic model and the lower bound cover them, and a
4-layer S5-shaped network (H=128, P=256) places on one chip."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from s4dc.passes.partition import partition
from s4dc.passes.place import place
from s4dc.targets.loihi2.hardware import load_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from placement import mimo_stack  # noqa: E402


def test_modes_and_units_are_dense_stages():
    g = mimo_stack(1, 128, 256)
    P = partition(g, load_spec())
    by = {p.layer: p for p in P.parts}
    modes, units = by["s5_0/modes"], by["s5_0"]
    assert (modes.op, modes.neurons, modes.state_neurons, modes.synapses) == ("mimo", 256, 256, 2 * 256 * 128)
    assert (units.neurons, units.state_neurons, units.synapses) == (128, 0, 128 * (2 * 256 + 128))
    msgs = {(P.parts[e.src].layer, P.parts[e.dst].layer): e.messages_per_step for e in P.edges}
    assert msgs[("encoder", "s5_0/modes")] == 128          # every input to the mode neurons (B)
    assert msgs[("s5_0/modes", "s5_0")] == 2 * 256         # re and im of every mode (C)
    assert msgs[("encoder", "s5_0")] == 128                # D path
    assert msgs[("s5_0", "decoder")] == 128


@pytest.mark.parametrize("host_input", [False, True])
def test_mode_synaptic_work_counts_both_rows(host_input):
    """Each input message reaches 2 synapses per mode (b_re, b_im): 2 P H_in
    synaptic ops per step on the modes' core, from the host or from an
    on-chip layer alike; their C synapses are the units' (over edges), so the
    cost model adds no state-to-unit readout on the modes' core."""
    from s4dc.passes.partition import cost_parts

    H, Pm = 16, 24
    g = mimo_stack(1, H, Pm)
    if host_input:   # the MIMO layer reads the input directly
        g.layer("encoder").params["weight"] = np.zeros((H, 1))
        g = mimo_stack(1, H, Pm, features=H)
        g.remove(g.layer("encoder"))
        g.layer("s5_0").inputs = ["input"]
    P = partition(g, load_spec())
    modes = next(p for p in P.parts if p.layer == "s5_0/modes")
    units = next(p for p in P.parts if p.layer == "s5_0")
    assert modes.synops_per_step == 2 * Pm * H
    assert units.synops_per_step == 2 * Pm * H + H * H     # C over re and im, D
    cp = {c["id"]: c["synops"] for c in cost_parts(P)}
    assert (cp[modes.id], cp[units.id]) == (modes.synops_per_step, units.synops_per_step)


def test_modes_split_over_cores_with_dense_fan_out():
    """A layer too big for one core: its modes split into balanced parts, and
    every output part receives every mode part's messages."""
    g = mimo_stack(1, 256, 1024)
    P = partition(g, load_spec())
    mparts = [p for p in P.parts if p.layer == "s5_0/modes"]
    uparts = [p for p in P.parts if p.layer == "s5_0"]
    assert len(mparts) > 1 and len(uparts) > 1
    sizes = [p.channels[1] - p.channels[0] for p in mparts]
    assert sum(sizes) == 1024 and max(sizes) - min(sizes) <= 1
    for u in uparts:
        into = {P.parts[e.src].id: e.messages_per_step for e in P.edges if e.dst == u.id}
        assert {m.id: 2 * (m.channels[1] - m.channels[0]) for m in mparts} == \
            {k: v for k, v in into.items() if P.parts[k].layer == "s5_0/modes"}
    for m in mparts:  # every mode part reads every input
        assert sum(e.messages_per_step for e in P.edges if e.dst == m.id) == 256


def test_s5_network_places_on_one_chip_with_its_gap():
    spec = load_spec()
    doc = place(partition(mimo_stack(4, 128, 256), spec), spec, seed=0, budget=2)
    assert doc["system"]["chips_used"] == 1
    pl = doc["placements"]
    assert pl["optimized"]["traffic"] <= pl["greedy"]["traffic"] <= pl["naive"]["traffic"]
    assert doc["bound"]["lower_bound"] > 0 and 0.0 <= doc["gap"] < 0.2
    layers = {p["layer"] for p in doc["partitions"]}
    assert {f"s5_{k}/modes" for k in range(4)} <= layers


def test_compiled_mimo_network_places_and_lava_plans_its_placement(tmp_path):
    import s4dc
    from s4dc.targets.lava.plan import plan

    d = np.load(Path(__file__).parent / "fixtures" / "mimo" / "canonical_s5.npz")
    cal = np.random.default_rng(0).standard_normal((16,) + d["x"].shape[1:]).astype(np.float32)
    net = s4dc.compile(Path(__file__).parent / "fixtures" / "mimo" / "canonical_s5.onnx", calibration=cal,
                       place_budget=1)
    net.save(tmp_path / "net")
    pl = plan(net.graph, tmp_path / "net" / "placement.json")
    modes = pl.groups["mimo_2.modes"]
    units = pl.groups["mimo_2"]
    assert modes.placement and units.placement
    assert {(p["chip"], p["core"]) for p in modes.placement}.isdisjoint((p["chip"], p["core"]) for p in units.placement)


@pytest.mark.parametrize("op", ["mimo"])
def test_dense_mimo_is_refused_by_the_partitioner(op):
    from s4dc.ir import Layer
    from s4dc.passes.partition import PARTITION_OPS
    from s4dc.ir.tensor import Tensor
    from s4dc.targets.loihi2.hardware import PlacementError
    from s4dc.targets.loihi2.numerics import BitWidths

    l = Layer("m", op, ["x"], "m", {"form": "dense", "time": "discrete", "folded": False},
              {"A": np.eye(3), "B": np.ones((3, 2)), "C": np.ones((2, 3))})
    with pytest.raises(PlacementError, match="dense shared state matrix cannot be partitioned"):
        PARTITION_OPS[op](l, Tensor("m", 2), BitWidths(), [None])
