"""Lava backend for MIMO layers: Lava's bit-accurate run of random quantized
MIMO networks gives the simulator's integers, bit for bit, over >= 200 steps
(several H_in, H_out, P and bit widths). Needs .venv-lava."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from s4dc.ir import Graph, Layer, Tensor, verify
from s4dc.network import Network
from s4dc.passes import PASSES
from s4dc.targets.lava.plan import plan
from s4dc.targets.loihi2.numerics import BitWidths
from test_lava import assert_bit_exact, manifest, needs_lava


def mimo_float_graph(rng, f_in: int, widths: list[int], modes: list[int], readout: str | None) -> Graph:
    """affine -> (mimo -> relu)* -> affine, mimo layer i mapping widths[i] to widths[i+1] with modes[i] modes."""
    g = Graph("mimo_lava")
    g.add(Layer("in", "input", [], "in", {"features": f_in}), Tensor("in", f_in))
    g.add(Layer("enc", "affine", ["in"], "enc", params={"weight": rng.standard_normal((widths[0], f_in)),
                                                          "bias": 0.1 * rng.standard_normal(widths[0])}),
          Tensor("enc", widths[0]))
    cur = "enc"
    for i, P in enumerate(modes):
        h_in, h_out = widths[i], widths[i + 1]
        lam = rng.uniform(0.3, 0.99, P) * np.exp(1j * rng.uniform(0, np.pi, P))
        c = lambda *s: rng.standard_normal(s) + 1j * rng.standard_normal(s)  # noqa: E731
        g.add(Layer(f"m{i}", "mimo", [cur], f"m{i}", {"form": "diagonal", "time": "discrete", "folded": True},
                    {"A": lam, "B": c(P, h_in) / np.sqrt(h_in), "C": 0.3 * c(h_out, P) / np.sqrt(P),
                     "D": rng.standard_normal((h_out, h_in)) / np.sqrt(h_in), "bias": 0.1 * rng.standard_normal(h_out)}),
              Tensor(f"m{i}", h_out))
        g.add(Layer(f"r{i}", "relu", [f"m{i}"], f"r{i}"), Tensor(f"r{i}", h_out))
        cur = f"r{i}"
    g.add(Layer("dec", "affine", [cur], "dec", params={"weight": rng.standard_normal((2, widths[-1])),
                                                        "bias": np.zeros(2)}), Tensor("dec", 2))
    if readout:
        g.add(Layer("ro", "readout", ["dec"], "ro", {"mode": readout}), Tensor("ro", 2, sequence=False))
        g.add(Layer("out", "output", ["ro"], "out", {"layout": ["B", "F"]}), Tensor("out", 2, sequence=False))
    else:
        g.add(Layer("out", "output", ["dec"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", 2))
    return verify(g)


def quantized_mimo_net(tmp: Path, seed: int, widths, modes, bits: BitWidths, readout=None) -> Path:
    rng = np.random.default_rng(seed)
    g = mimo_float_graph(rng, 2, widths, modes, readout)
    x = rng.standard_normal((8, 48, 2))
    q, _ = PASSES["quantize"](g, SimpleNamespace(calibration_x=x, precision={"__default__": bits}))
    out = tmp / f"mimo{seed}"
    q = verify(q)
    Network(q, manifest(q)).save(out)
    return out


# (seed, widths H_0..H_L, modes per layer, bit widths, batch, time, input scale)
CASES = [
    (21, [3, 5], [4], BitWidths(), 1, 200, 1.0),
    (22, [4, 2, 6], [7, 3], BitWidths(weight=4, a=12, state=20, message=16), 1, 200, 1.5),
    (23, [6, 6], [16], BitWidths(weight=6, a=8, state=16, message=16), 2, 110, 1.0),
    (24, [2, 8, 3], [5, 12], BitWidths(weight=8, a=16, state=24, message=24), 1, 200, 6.0),
]


@needs_lava
@pytest.mark.parametrize("seed,widths,modes,bits,batch,time,scale", CASES, ids=[f"seed{c[0]}" for c in CASES])
def test_random_mimo_networks_bit_exact(tmp_path, seed, widths, modes, bits, batch, time, scale):
    out = quantized_mimo_net(tmp_path, seed, widths, modes, bits, readout="mean" if seed == 23 else None)
    x = scale * np.random.default_rng(seed + 100).standard_normal((batch, time, 2)).astype(np.float32)
    info = assert_bit_exact(out, x)
    # two synapse stages per MIMO layer, one per affine
    assert info["layer_latency"]["m0"] == 3


def test_mimo_plan_without_lava(tmp_path):
    """The mapping itself (no Lava needed): B into 2P ports, [c_re, -c_im] out, D delayed by one."""
    import s4dc

    out = quantized_mimo_net(tmp_path, 22, [4, 2, 6], [7, 3], BitWidths(weight=4, a=12, state=20, message=16))
    g = s4dc.load(out).graph
    pl = plan(g)
    modes = pl.groups["m0.modes"]
    assert (modes.kind, modes.size, modes.params["modes"], modes.latency) == ("mimo", 14, 7, 2)
    syn = {s.name: s for s in pl.synapses}
    l = g.layer("m0")
    np.testing.assert_array_equal(syn["m0.c"].w, np.concatenate([l.params["c_re"], -l.params["c_im"]], axis=1))
    assert syn["m0.b"].w.shape == (14, 4) and not syn["m0.b"].sparse and syn["m0.d"].delay == 1
    assert pl.layer_latencies()["m1"] == 5


MIMO_PRECISIONS = r"""
import inspect, json
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.type import LavaPyType
import s4dc.targets.lava.processes_mimo as P
rows = {name: {k: v.precision for k, v in inspect.getmembers(cls) if isinstance(v, LavaPyType) and v.precision is not None}
        for name, cls in vars(P).items()
        if inspect.isclass(cls) and issubclass(cls, PyLoihiProcessModel) and cls.__module__ == P.__name__}
print(json.dumps(rows))
"""


@needs_lava
def test_mimo_neuron_precisions_are_the_numerics_widths():
    import json
    import subprocess

    from s4dc.targets.lava.runner import lava_python
    from s4dc.targets.loihi2 import numerics as nm

    r = subprocess.run([lava_python(), "-c", MIMO_PRECISIONS], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    declared = json.loads(r.stdout.strip().splitlines()[-1])
    assert declared == {"PyMimoNeuronFixed": {
        "a_in": nm.MESSAGE_BITS, "s_out": nm.MESSAGE_BITS, "a_re": nm.MAX_COEF_BITS, "a_im": nm.MAX_COEF_BITS,
        "b_shift": nm.SHIFT_PARAM_BITS, "xr": nm.STATE_BITS, "xi": nm.STATE_BITS, "saturations": nm.COUNTER_BITS}}


@needs_lava
def test_saturating_mimo_network_counts_alike(tmp_path):
    """Inputs far beyond calibration: states and outputs hit their rails in
    Lava exactly as in the simulator (assert_bit_exact compares the counts)."""
    out = quantized_mimo_net(tmp_path, 25, [3, 4], [6], BitWidths(weight=8, a=16, state=12, message=12))
    x = 40 * np.random.default_rng(125).standard_normal((1, 200, 2)).astype(np.float32)
    info = assert_bit_exact(out, x)
    assert info["saturations"]["m0"] > 0


@needs_lava
def test_compiled_s5_fixture_runs_in_lava_with_its_placement(tmp_path):
    """From ONNX (two s4dc.MIMO layers) through compile, placement and Lava:
    the simulator's outputs, bit for bit."""
    import s4dc
    from s4dc.targets.lava.runner import run_lava
    from conftest import FIXTURES

    d = np.load(FIXTURES / "mimo" / "canonical_s5.npz")
    cal = np.random.default_rng(0).standard_normal((16,) + d["x"].shape[1:]).astype(np.float32)
    net = s4dc.compile(FIXTURES / "mimo" / "canonical_s5.onnx", calibration=cal, place_budget=1)
    net.save(tmp_path / "net")
    x = np.random.default_rng(1).standard_normal((1, 200, d["x"].shape[2])).astype(np.float32)
    y, info = run_lava(tmp_path / "net", x, placement=tmp_path / "net" / "placement.json", timeout=300)
    np.testing.assert_array_equal(y, net.run(x))
