"""Hardware model (targets/loihi2/hardware.py) and the partition pass:
per-core limits never exceeded, every neuron in exactly one part, message
counts, errors that name the field or the resource."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import s4dc
from s4dc.errors import S4dcError
from s4dc.ir import Graph, Layer, Tensor, verify
from s4dc.passes import PASSES
from s4dc.passes.partition import (ConstraintError, activity_from_trace, depth_steps, estimate, measure, partition,
                                   partition_for, spread_of)
from s4dc.targets.loihi2.hardware import HardwareSpec, HardwareSpecError, PlacementError, ResourceError, load_spec
from s4dc.targets.loihi2.numerics import BitWidths

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"


def stack(blocks: int, H: int, N: int, features: int = 1, classes: int = 3, rng=None, residual: bool = False) -> Graph:
    """A float n-S4D graph: encoder, blocks of ssm + relu + mixing affine (+ residual add), decoder."""
    rng = rng or np.random.default_rng(0)
    g = Graph("t")
    g.add(Layer("in", "input", [], "in", {"features": features}), Tensor("in", features))

    def aff(nm, src, o, i):
        g.add(Layer(nm, "affine", [src], nm, params={"weight": rng.standard_normal((o, i)) / np.sqrt(i),
                                                      "bias": 0.1 * rng.standard_normal(o)}), Tensor(nm, o))
    aff("enc", "in", H, features)
    cur = "enc"
    for k in range(blocks):
        lam = rng.uniform(0.3, 0.95, (H, N)) * np.exp(1j * rng.uniform(0, np.pi, (H, N)))
        g.add(Layer(f"s{k}", "ssm", [cur], f"s{k}", {"form": "diagonal", "time": "discrete", "folded": True},
                    {"A": lam, "B": rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N)),
                     "C": 0.3 * (rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N))),
                     "D": rng.standard_normal(H), "bias": 0.1 * rng.standard_normal(H)}), Tensor(f"s{k}", H))
        g.add(Layer(f"r{k}", "relu", [f"s{k}"], f"r{k}"), Tensor(f"r{k}", H))
        aff(f"m{k}", f"r{k}", H, H)
        nxt = f"m{k}"
        if residual and k > 0:
            g.add(Layer(f"add{k}", "add", [nxt, cur], f"add{k}"), Tensor(f"add{k}", H))
            nxt = f"add{k}"
        cur = nxt
    aff("dec", cur, classes, H)
    g.add(Layer("out", "output", ["dec"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", classes))
    return verify(g)


def check_partition(graph: Graph, P) -> None:
    """Per-core limits hold; every layer's units, channels and states are in exactly one part."""
    spec = P.spec
    for p in P.parts:
        assert p.neurons <= spec.neurons_per_core
        assert p.memory["neuron"] <= spec.neuron_memory_bytes
        assert p.memory["synapse"] <= spec.synapse_memory_bytes
        assert p.memory["axon"] <= spec.axon_memory_bytes
        assert p.memory_bytes <= spec.memory_bytes_per_core
    assert [p.id for p in P.parts] == list(range(len(P.parts)))
    for info in P.layers:
        L = graph.layer(info["layer"])
        ps = [p for p in P.parts if p.layer == L.name]
        H = graph.tensors[L.output].features
        covered = np.zeros(H, dtype=int)
        for p in ps:
            if p.has_units:
                covered[p.channels[0]:p.channels[1]] += 1
        assert (covered == 1).all(), L.name
        if L.op in ("ssm", "qssm"):
            N = (L.params["A"] if L.op == "ssm" else L.params["a_re"]).shape[1]
            states = np.zeros((H, N), dtype=int)
            for p in ps:
                lo, hi = p.state_range or (0, N)
                states[p.channels[0]:p.channels[1], lo:hi] += 1
            assert (states == 1).all(), L.name
            assert sum(p.neurons for p in ps) == H * (N + 1)
            assert sum(p.state_neurons for p in ps) == H * N
        else:
            assert sum(p.neurons for p in ps) == H
    for e in P.edges:
        assert e.src != e.dst and e.messages_per_step > 0


# -- hardware model ----------------------------------------------------------------
def test_spec_defaults_and_round_trip(tmp_path):
    s = load_spec()
    assert (s.cores_per_chip, s.mesh, s.neurons_per_core, s.memory_bytes_per_core) == (128, (16, 8), 8192, 196608)
    # "8x16" read as 8 rows x 16 columns, cores numbered along the 16-core rows (docs/hardware_model.md)
    assert s.mesh[0] * s.mesh[1] == s.cores_per_chip == 128
    assert (s.core_xy(0), s.core_xy(15), s.core_xy(16), s.core_xy(127)) == ((0, 0), (15, 0), (0, 1), (15, 7))
    # the other orientation stays one field away
    s816 = load_spec({"mesh": [8, 16]})
    assert (s816.mesh, s816.cores, s816.core_xy(8), s816.core_xy(127)) == ((8, 16), 128, (0, 1), (7, 15))
    assert s.synapse_memory_bytes + s.neuron_memory_bytes + s.axon_memory_bytes == s.memory_bytes_per_core
    doc = s.to_json()
    assert doc["format"] == "s4dc-loihi2-hardware"
    f = tmp_path / "hw.json"
    f.write_text(json.dumps({**doc, "chips": 4, "chip_link_cost": 8}))
    s4 = load_spec(str(f))
    assert (s4.chips, s4.chip_link_cost, s4.cores, s4.grid) == (4, 8.0, 512, (2, 2))
    assert load_spec(s4, chips=2).chips == 2 and load_spec(s4, chips=None).chips == 4
    assert load_spec(s4.to_json()) == s4


@pytest.mark.parametrize("fields,name", [
    ({"neurons_per_cor": 5}, "neurons_per_cor"),
    ({"neurons_per_core": 0}, "neurons_per_core"),
    ({"chips": "4"}, "chips"),
    ({"chips": 0}, "chips"),
    ({"mesh": [8, 8]}, "mesh"),
    ({"mesh": [8]}, "mesh"),
    ({"hop_cost": -1}, "hop_cost"),
    ({"hop_cost": float("nan")}, "hop_cost"),
    ({"chip_link_cost": 0.5}, "chip_link_cost"),
    ({"synapse_memory_bytes": 200000}, "memory_bytes_per_core"),
    ({"message_bits": 32}, "message_bits"),
    ({"chips": 4, "chip_grid": [1, 2]}, "chip_grid"),
    ({"router_load_weight": -0.5}, "router_load_weight"),
    ({"format_version": 9}, "format_version"),
])
def test_impossible_hardware_values_name_the_field(fields, name):
    with pytest.raises(HardwareSpecError, match=f"'{name}"):
        load_spec(fields)


def test_hardware_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HardwareSpecError, match="bad.json: not valid JSON"):
        load_spec(str(bad))
    with pytest.raises(HardwareSpecError, match="cannot read"):
        load_spec(str(tmp_path / "missing.json"))
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    with pytest.raises(HardwareSpecError, match="JSON object"):
        load_spec(str(arr))
    neg = tmp_path / "neg.json"
    neg.write_text('{"axon_memory_bytes": -4}')
    with pytest.raises(HardwareSpecError, match=r"neg\.json: field 'axon_memory_bytes'"):
        load_spec(str(neg))
    assert issubclass(HardwareSpecError, S4dcError) and issubclass(ResourceError, S4dcError)


# -- partition ---------------------------------------------------------------------
def test_digits_network_partition():
    net = s4dc.compile("examples/digits/model.onnx", calibration="examples/digits/calibration.npz")
    P = partition(net.graph)
    check_partition(net.graph, P)
    ops = [p.op for p in P.parts]
    assert ops.count("qssm") == 3 and ops.count("qaffine") == 5
    # chain: every layer sends its 64 (10) units once to the next layer's single part
    assert [(e.src, e.dst, e.messages_per_step) for e in P.edges] == [(i, i + 1, 64) for i in range(7)]
    ssm = next(p for p in P.parts if p.op == "qssm")
    spec = load_spec()
    bw = BitWidths()
    assert ssm.memory["neuron"] == -(-(64 * 33 * spec.state_neuron_bits(bw) + 64 * spec.unit_neuron_bits(bw)) // 8)
    assert ssm.synapses == 64 * (2 * 33 + 1)


def test_float_and_quantized_graphs_partition_alike():
    rng = np.random.default_rng(3)
    g = stack(2, 6, 3, features=2, rng=rng, residual=True)
    q, _ = PASSES["quantize"](g, SimpleNamespace(calibration_x=rng.standard_normal((4, 12, 2)),
                                                 precision={"__default__": BitWidths()}))
    spec = {"neuron_memory_bytes": 150, "synapse_memory_bytes": 120, "axon_memory_bytes": 96}
    Pf, Pq = partition(g, spec), partition(verify(q), spec)
    check_partition(g, Pf)
    check_partition(q, Pq)
    strip = lambda P: [{k: v for k, v in p.to_json().items() if k != "op"} for p in P.parts]
    assert strip(Pf) == strip(Pq)
    assert [p.op for p in Pq.parts][:2] == ["qaffine", "qssm"]
    assert [e.to_json() for e in Pf.edges] == [e.to_json() for e in Pq.edges]
    # narrower widths need less memory
    q4, _ = PASSES["quantize"](g, SimpleNamespace(calibration_x=rng.standard_normal((4, 12, 2)),
                                                  precision={"__default__": BitWidths(weight=4, a=8, b=8, c=8)}))
    P4 = partition(verify(q4), spec)
    assert sum(p.memory_bytes for p in P4.parts) < sum(p.memory_bytes for p in Pq.parts)


def test_limits_hold_on_random_graphs_and_specs():
    rng = np.random.default_rng(7)
    for trial in range(12):
        H, N, blocks = int(rng.integers(2, 40)), int(rng.integers(1, 9)), int(rng.integers(1, 4))
        g = stack(blocks, H, N, features=int(rng.integers(1, 4)), rng=rng, residual=bool(trial % 2))
        spec = {"neuron_memory_bytes": int(rng.integers(60, 3000)), "synapse_memory_bytes": int(rng.integers(90, 3000)),
                "axon_memory_bytes": int(rng.integers(120, 2000)), "neurons_per_core": int(rng.integers(12, 200))}
        try:
            P = partition(g, spec)
        except ResourceError as e:
            assert "needs" in str(e) and "a core has" in str(e)
            continue
        check_partition(g, P)


def test_channels_stay_together_unless_one_does_not_fit():
    g = stack(1, 8, 6)
    # a channel: 6 states x 22 bytes + a 10-byte unit = 142 bytes
    P = partition(g, {"neuron_memory_bytes": 430})
    check_partition(g, P)
    ssm = [p for p in P.parts if p.layer == "s0"]
    assert all(p.state_range is None for p in ssm) and len(ssm) == 3   # 3, 3, 2 channels
    assert [p.channels for p in ssm] == [(0, 3), (3, 6), (6, 8)]
    P = partition(g, {"neuron_memory_bytes": 60})                        # 2 states per core with the unit
    check_partition(g, P)
    ssm = [p for p in P.parts if p.layer == "s0"]
    assert len(ssm) == 8 * 3 and all(p.state_range for p in ssm)
    # state chunks send their per-state messages to the channel unit's part
    unit = {p.channels[0]: p.id for p in ssm if p.has_units}
    internal = [e for e in P.edges if P.parts[e.src].layer == P.parts[e.dst].layer == "s0"]
    assert len(internal) == 8 * 2 and all(e.dst == unit[P.parts[e.src].channels[0]] for e in internal)
    assert all(e.messages_per_step == 2 for e in internal)


def test_dense_layers_fan_out_to_every_part():
    g = stack(1, 64, 4)
    P = partition(g, {"synapse_memory_bytes": 64 * 20})   # mixing affine: 20 rows per core -> 4 parts
    check_partition(g, P)
    mix = [p.id for p in P.parts if p.layer == "m0"]
    ssm = [p for p in P.parts if p.layer == "s0"]
    assert len(mix) == 4
    for s in ssm:   # every channel unit reaches every part of the dense layer: one message each
        for m in mix:
            e = next(e for e in P.edges if e.src == s.id and e.dst == m)
            assert e.messages_per_step == s.channels[1] - s.channels[0]


def test_a_unit_that_cannot_fit_names_the_resource():
    g = stack(1, 4, 2, features=300)
    with pytest.raises(ResourceError, match=r"layer 'enc' \(affine\): one unit needs 300 bytes of synapse memory, "
                                            r"a core has 200"):
        partition(g, {"synapse_memory_bytes": 200})
    with pytest.raises(ResourceError, match="neurons"):
        partition(stack(1, 4, 2), {"neurons_per_core": 1})


def test_activity_scales_messages():
    rng = np.random.default_rng(0)
    g = stack(1, 6, 3, features=2, rng=rng)
    P1 = partition(g)
    P2 = partition(g, activity={"s0": 0.25})
    for e1, e2 in zip(P1.edges, P2.edges):
        f = 0.25 if P1.parts[e1.src].layer == "s0" else 1.0
        assert e2.messages_per_step == pytest.approx(f * e1.messages_per_step)
    with pytest.raises(PlacementError, match="'nope'"):
        partition(g, activity={"nope": 0.5})
    with pytest.raises(PlacementError, match="fraction"):
        partition(g, activity={"s0": 1.5})
    a = np.zeros((2, 4, 3), dtype=np.int64)
    a[0, 1, 0] = 5          # changes at steps 1 and 2 of one unit
    act = activity_from_trace({"L": a, "host": np.zeros((2, 3))})
    assert act == {"L": pytest.approx(2 / 24)}


def test_host_side_layers_take_no_core():
    net = s4dc.compile("examples/digits/model.onnx", float_only=True)
    P = partition(net.graph)
    check_partition(net.graph, P)
    names = {p.layer for p in P.parts}
    assert not names & {"input", "node_mean", "output_logits"}
    with pytest.raises(PlacementError, match="op 'conv'"):
        g = stack(1, 2, 2)
        g.layers[2] = Layer("s0", "conv", ["enc"], "s0", params={"kernel": np.zeros((2, 3)), "D": np.zeros(2),
                                                                 "bias": np.zeros(2)})
        partition(g)


def test_spec_object_is_used_as_is():
    spec = HardwareSpec()
    P = partition(stack(1, 4, 2), spec)
    assert P.spec is spec


def test_message_width_must_fit_the_hardware():
    with pytest.raises(ResourceError, match=r"message bits: layer 'enc' \(affine\) sends 24-bit messages, .* carry 16"):
        partition(stack(1, 4, 2), {"message_bits": 16})


# -- spreading layers and partitioning for an objective ----------------------------
KEYS = {"cores": lambda c: (c["cores"], c["latency_per_token_s"]),
        "latency": lambda c: (c["latency_per_token_s"], c["cores"]),
        "energy": lambda c: (c["energy_per_token_j"], c["cores"]),
        "edp": lambda c: (c["energy_per_token_j"] * c["latency_per_token_s"], c["cores"])}


@pytest.fixture(scope="module")
def large():
    """Shaped like the paper's large model: 4 S4D layers, H = 128, N = 64."""
    return stack(4, 128, 64)


def test_requested_parts_spread_a_layer():
    g = stack(2, 32, 8)
    P0 = partition(g)
    assert [r["parts"] for r in P0.layers if r["layer"] == "s0"] == [1]
    P = partition(g, spread={"s0": 5, "m0": 3})
    check_partition(g, P)
    rows = {r["layer"]: r for r in P.layers}
    assert (rows["s0"]["parts"], rows["m0"]["parts"], rows["s1"]["parts"]) == (5, 3, 1)
    assert rows["s0"]["binding"] == rows["m0"]["binding"] == "spread (partition objective)"
    sizes = sorted(p.channels[1] - p.channels[0] for p in P.parts if p.layer == "s0")
    assert sizes == [6, 6, 6, 7, 7]   # balanced: 32 channels over 5 parts
    # each S4D part sends to each of the 3 mixing parts: messages into m0 grow with its parts
    into = lambda Q: sum(e.messages_per_step for e in Q.edges if Q.parts[e.dst].layer == "m0")  # noqa: E731
    assert into(P) == 3 * into(P0) == 3 * 32
    assert spread_of(P) == {r["layer"]: r["parts"] for r in P.layers}
    with pytest.raises(PlacementError, match="^spread of layer 's0' = 33: must be an integer from 1 to its 32 units$"):
        partition(g, spread={"s0": 33})
    with pytest.raises(PlacementError, match="^spread names 'r0', which is not an on-chip layer of 't'$"):
        partition(g, spread={"r0": 2})   # fused into s0


@pytest.mark.parametrize("objective", ["cores", "latency", "energy", "edp"])
def test_each_objective_chooses_its_best_split(large, objective):
    P, s = partition_for(large, objective=objective)
    cands = s["candidates"]
    assert len(cands) > 10 and s["objective"] == objective
    chosen = cands[s["chosen"]]
    assert min(KEYS[objective](c) for c in cands) == KEYS[objective](chosen)
    assert P.n_parts == chosen["cores"] and spread_of(P) == chosen["parts"]
    check_partition(large, P)
    # the stored figures are the cost model's estimate of that split
    est = estimate(P, depth_steps(large))
    assert chosen["latency_per_token_s"] == pytest.approx(est["latency_per_token_s"], rel=1e-5)
    assert chosen["energy_per_token_j"] == pytest.approx(est["energy_per_token_j"], rel=1e-5)
    # splits go from the fewest cores (each layer's fewest parts) up to at most the system's cores
    assert cands[0]["cores"] == partition(large).n_parts
    assert all(a["cores"] < b["cores"] for a, b in zip(cands, cands[1:]))
    assert cands[-1]["cores"] <= 128


def test_latency_objective_spreads_the_large_model(large):
    Pc, sc = partition_for(large, objective="cores")
    Pl, sl = partition_for(large, objective="latency")
    c, l = sc["candidates"][sc["chosen"]], sl["candidates"][sl["chosen"]]
    assert l["cores"] > 4 * c["cores"]
    assert l["latency_per_token_s"] < c["latency_per_token_s"] / 4
    assert sc["candidates"] == sl["candidates"]           # the same splits, another choice
    # time per step falls as the layers spread (it is set by the slowest core)
    t = [x["time_per_step_s"] for x in sc["candidates"]]
    assert t[-1] < t[0] / 4


def test_constraints_are_met_or_refused(large):
    fewest = partition(large).n_parts
    with pytest.raises(ConstraintError, match=f"^max_cores 5: the network needs at least {fewest} cores "
                                              r"\(each layer's fewest parts that fit a core\)$"):
        partition_for(large, max_cores=5)
    P, s = partition_for(large, objective="latency", max_cores=40)
    assert P.n_parts <= 40 and all(c["cores"] <= 40 for c in s["candidates"])
    best = min(s["candidates"], key=lambda c: c["latency_per_token_s"])
    with pytest.raises(ConstraintError) as e:
        partition_for(large, objective="energy", max_cores=40, max_latency_us=best["latency_per_token_s"] * 1e6 / 2)
    assert str(e.value) == (f"max_latency_us {best['latency_per_token_s'] * 1e6 / 2:g}: the lowest modelled latency "
                            f"per token among the {len(s['candidates'])} splits considered is "
                            f"{best['latency_per_token_s'] * 1e6:.3g} us (on {best['cores']} cores, at most 40); "
                            "allow more latency or more cores")
    # a limit between the extremes: the energy choice among the splits that meet it
    lim = (s["candidates"][0]["latency_per_token_s"] + best["latency_per_token_s"]) / 2 * 1e6
    P, s = partition_for(large, objective="energy", max_latency_us=lim)
    ok = [c for c in s["candidates"] if c["latency_per_token_s"] <= lim * 1e-6]
    chosen = s["candidates"][s["chosen"]]
    assert chosen["meets"] and chosen in ok and len(ok) < len(s["candidates"])
    assert chosen["energy_per_token_j"] == min(c["energy_per_token_j"] for c in ok)
    with pytest.raises(ConstraintError, match="^objective must be one of cores, latency, energy, edp, got 'speed'$"):
        partition_for(large, objective="speed")


def test_partition_search_is_deterministic(large):
    a = partition_for(large, objective="edp")[1]
    b = partition_for(large, objective="edp")[1]
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_activity_and_sparsity_measured_on_data():
    from s4dc.targets.fixed_sim import FixedSimulator

    digits = s4dc.compile(str(DIGITS / "model.onnx"), calibration=str(DIGITS / "calibration.npz"), place=False)
    x = np.load(DIGITS / "calibration.npz")["x"]
    m = measure(digits.graph, x, max_samples=8)
    tr = FixedSimulator(digits.graph).trace(x[:8])
    relu = [l.name for l in digits.graph.layers if l.attrs.get("relu")]
    assert set(m.relu) == set(relu) and len(relu) == 3
    for name in relu:
        v = np.asarray(tr[name])
        assert m.sparsity[name] == np.count_nonzero(v == 0) / v.size
        assert m.activity[name] == activity_from_trace({name: v})[name]
        assert 0.2 < m.sparsity[name] < 1.0
    # shifting ReLU outputs down only adds zeros; at the largest shift nothing is sent
    for a, b in zip(m.sweep, m.sweep[1:]):
        assert all(b["sparsity"][k] >= a["sparsity"][k] for k in relu)
    assert all(m.sweep[-1]["sparsity"][k] == 1.0 and m.sweep[-1]["activity"][k] == 0.0 for k in relu)
    assert m.sweep[0]["activity"] == m.activity
    # measured activity lowers messages and modelled energy against the default activity 1.0
    P1, P = partition(digits.graph), partition(digits.graph, activity=m.activity)
    d = depth_steps(digits.graph)
    assert sum(e.messages_per_step for e in P.edges) < sum(e.messages_per_step for e in P1.edges)
    assert estimate(P, d)["energy_per_token_j"] < estimate(P1, d)["energy_per_token_j"]


def test_a_system_too_small_for_any_split_is_refused_by_place():
    from s4dc.passes.place import place

    g = stack(2, 32, 8)
    spec = load_spec({"cores_per_chip": 2, "mesh": [1, 2]})
    P, s = partition_for(g, spec, objective="latency")
    assert P.n_parts == partition(g, spec).n_parts > 2 and s["chosen"] == 0 and not s["candidates"][0]["meets"]
    with pytest.raises(ResourceError, match=f"^cores: the network needs {P.n_parts} cores, the system has 2 "):
        place(P, spec, budget=0)
