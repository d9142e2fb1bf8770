"""Lava backend: Lava's bit-accurate simulation of a compiled network gives the
integers of the numpy simulator, bit for bit (docs/lava.md).

The Lava runs need `.venv-lava` (`make .venv-lava`); without it those tests
skip and say so. The mapping checks and error paths run without it.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from s4dc.errors import InputDataError
from s4dc.ir import Graph, Layer, Tensor, verify
from s4dc.network import Network
from s4dc.passes import PASSES
from s4dc.targets.fixed_sim import FixedSimulator
from s4dc.targets.lava.errors import LavaMappingError, LavaSetupError
from s4dc.targets.lava.plan import MAX_SYNAPSE_DELAY, lava_weights, plan
from s4dc.targets.lava.runner import check, lava_available, lava_python, run_lava
from s4dc.targets.loihi2.numerics import BitWidths

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
LAVA_TIMEOUT = 300  # seconds per Lava run: a hang fails the test instead of the suite
needs_lava = pytest.mark.skipif(not lava_available(),
                                reason="no Lava environment (.venv-lava): run `make .venv-lava` "
                                       "or set S4DC_LAVA_PYTHON")


# --- random quantized networks -------------------------------------------------------
def float_graph(rng, f_in: int, H: int, N: int, layers: int, residual: str | None, readout: str | None) -> Graph:
    """affine -> ssm -> relu blocks; residual 'add' (r_i + r_{i-1}) or
    'add_relu' (a ReLU after the add: a ReLU layer of its own on chip);
    readout: None (sequence output) or 'last'/'mean' with a host affine after."""
    g = Graph("lava_test")
    g.add(Layer("in", "input", [], "in", {"features": f_in}), Tensor("in", f_in))
    cur, width, prev = "in", f_in, None
    for i in range(layers):
        g.add(Layer(f"a{i}", "affine", [cur], f"a{i}", params={"weight": rng.standard_normal((H, width)) / np.sqrt(width),
                                                                "bias": 0.1 * rng.standard_normal(H)}), Tensor(f"a{i}", H))
        lam = rng.uniform(0.3, 0.99, (H, N)) * np.exp(1j * rng.uniform(0, np.pi, (H, N)))
        g.add(Layer(f"s{i}", "ssm", [f"a{i}"], f"s{i}", {"form": "diagonal", "time": "discrete", "folded": True},
                    {"A": lam, "B": rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N)),
                     "C": 0.3 * (rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N))),
                     "D": rng.standard_normal(H), "bias": 0.1 * rng.standard_normal(H)}), Tensor(f"s{i}", H))
        g.add(Layer(f"r{i}", "relu", [f"s{i}"], f"r{i}"), Tensor(f"r{i}", H))
        cur, width = f"r{i}", H
        if residual and prev is not None:
            g.add(Layer(f"add{i}", "add", [cur, prev], f"add{i}"), Tensor(f"add{i}", H))
            cur = f"add{i}"
            if residual == "add_relu":
                g.add(Layer(f"ar{i}", "relu", [cur], f"ar{i}"), Tensor(f"ar{i}", H))
                cur = f"ar{i}"
        prev = cur
    g.add(Layer("dec", "affine", [cur], "dec", params={"weight": rng.standard_normal((3, H)) / np.sqrt(H),
                                                        "bias": 0.1 * rng.standard_normal(3)}), Tensor("dec", 3))
    if readout:
        g.add(Layer("ro", "readout", ["dec"], "ro", {"mode": readout}), Tensor("ro", 3, sequence=False))
        g.add(Layer("head", "affine", ["ro"], "head", params={"weight": rng.standard_normal((2, 3)),
                                                              "bias": np.zeros(2)}), Tensor("head", 2, sequence=False))
        g.add(Layer("out", "output", ["head"], "out", {"layout": ["B", "F"]}), Tensor("out", 2, sequence=False))
    else:
        g.add(Layer("out", "output", ["dec"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", 3))
    return verify(g)


def manifest(g: Graph) -> dict:
    """The manifest sections `s4dc.load` checks (s4dc.compile writes the full one)."""
    return {"format": "s4dc-net", "format_version": 1,
            "io": {"input": {"features": g.input_layer.attrs["features"]},
                   "outputs": [{"features": g.tensors[l.output].features, "sequence": g.tensors[l.output].sequence,
                                "layout": l.attrs["layout"]} for l in g.output_layers]},
            "files": {"graph": "graph.json", "params": "params.npz", "timings": "timings.json"}}


def quantized_net(tmp: Path, seed: int, *, f_in=2, H=4, N=3, layers=2, residual=None, readout=None,
                  bits=BitWidths(), per_layer=None, calib_scale=1.0) -> Path:
    rng = np.random.default_rng(seed)
    g = float_graph(rng, f_in, H, N, layers, residual, readout)
    precision = {"__default__": bits, **(per_layer or {})}
    x = calib_scale * rng.standard_normal((8, 48, f_in))
    q, _ = PASSES["quantize"](g, SimpleNamespace(calibration_x=x, precision=precision))
    out = tmp / f"net{seed}"
    q = verify(q)
    Network(q, manifest(q)).save(out)
    return out


def assert_bit_exact(out: Path, x: np.ndarray) -> dict:
    """Lava's integers (every on-chip layer), outputs and saturation counts
    equal the simulator's."""
    import s4dc

    g = s4dc.load(out).graph
    y, info = run_lava(out, x, messages=True, trace=True, timeout=LAVA_TIMEOUT)
    sim = FixedSimulator(g)
    ref = sim.trace(x)
    chip = [l for l in g.layers if g.tensors[l.output].sequence]
    assert set(info["trace"]) == {l.name for l in chip}
    for l in chip:
        got, want = info["trace"][l.name], ref[l.name]
        assert got.dtype == np.int64 and got.shape == want.shape, (l.name, got.shape, want.shape)
        bad = np.argwhere(got != want)
        assert bad.size == 0, f"{l.name}: {len(bad)} values differ, first at (b, t, f) = {bad[0]}"
    run_sim = FixedSimulator(g)
    want_y = run_sim.run(x)
    for a, b in zip(y if isinstance(y, list) else [y], want_y if isinstance(want_y, list) else [want_y]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert info["saturations"] == run_sim.saturations
    # latency: the output's synapse count; the run covered every sample plus it
    B, T = x.shape[:2]
    assert info["steps"] == B * T + max(info["layer_latency"].values())
    assert info["latency_steps"] == plan(g).latency_steps
    return info


# (seed, network, bit widths, batch, time, input scale): 1 to 4 layers, several
# widths H, state sizes N and bit widths, >= 200 steps per stream
CASES = [
    (11, dict(f_in=1, H=3, N=4, layers=1), BitWidths(), 1, 200, 1.0),
    (12, dict(f_in=2, H=5, N=3, layers=2, residual="add"), BitWidths(weight=4, a=12, b=10, c=10), 1, 200, 1.5),
    (13, dict(f_in=3, H=8, N=2, layers=3, residual="add_relu", readout="last"),
     BitWidths(weight=6, a=8, state=16, message=16), 1, 200, 1.0),
    (14, dict(f_in=2, H=4, N=6, layers=4, readout="mean"), BitWidths(weight=3, a=6, b=6, c=6, state=12, message=12),
     1, 200, 1.0),
    (15, dict(f_in=2, H=16, N=8, layers=2, residual="add"), BitWidths(), 2, 120, 3.0),
]


@needs_lava
@pytest.mark.parametrize("seed,net,bits,batch,time,scale", CASES, ids=[f"seed{c[0]}" for c in CASES])
def test_random_networks_bit_exact(tmp_path, seed, net, bits, batch, time, scale):
    per_layer = {"s1": BitWidths(weight=5, a=14, b=12, c=9, state=20, message=20)} if seed == 15 else None
    out = quantized_net(tmp_path, seed, bits=bits, per_layer=per_layer, **net)
    x = scale * np.random.default_rng(seed + 100).standard_normal((batch, time, net["f_in"])).astype(np.float32)
    assert_bit_exact(out, x)


@needs_lava
def test_saturation_matches(tmp_path):
    """Calibrated on small inputs, run on large ones: states and messages hit
    their rails, in Lava exactly where the simulator says."""
    out = quantized_net(tmp_path, 21, f_in=2, H=4, N=4, layers=2, calib_scale=0.1)
    x = (4.0 * np.random.default_rng(5).standard_normal((1, 200, 2))).astype(np.float32)
    info = assert_bit_exact(out, x)
    assert sum(info["saturations"].values()) > 0


@pytest.fixture(scope="module")
def digits_out(tmp_path_factory) -> Path:
    import s4dc

    calib = DIGITS / "calibration.npz"
    out = tmp_path_factory.mktemp("digits") / "net"
    s4dc.compile(str(DIGITS / "model.onnx"), calibration=str(calib)).save(out)
    return out


@needs_lava
def test_digits_bit_exact(digits_out):
    """The shipped digits model (64-step images) on a 256-step stream of four
    test images back to back: the IR does not depend on the length."""
    x = np.load(DIGITS / "test.npz")["x"][:4].reshape(1, 256, 1)
    info = assert_bit_exact(digits_out, x)
    # input -> 5 affines (1 step each) + 3 S4D layers (2 each)
    assert info["latency_steps"] == 11
    assert info["warnings"] == []


@needs_lava
def test_digits_batch_of_samples(digits_out):
    """Samples of one batch run back to back in one Lava run; each starts
    from zero state, as in the simulator."""
    x = np.load(DIGITS / "test.npz")["x"][4:7]
    y, info = run_lava(digits_out, x, timeout=LAVA_TIMEOUT)
    import s4dc

    assert np.array_equal(y, FixedSimulator(s4dc.load(digits_out).graph).run(x))
    assert info["steps"] == 3 * 64 + 11


# --- our models against lava's own, and lava's weight encoding --------------------
LAVA_CHECKS = r"""
import json, numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from lava.proc.s4d.process import S4d
from lava.utils.weightutils import SignMode, clip_weights, truncate_weights
from s4dc.targets.lava.plan import lava_weights
from s4dc.targets.lava.processes import S4dNeuron

res = {}
# 1. our floating_pt S4D neuron against lava's S4d on the same parameters
rng = np.random.default_rng(0)
n, T, fa = 12, 60, 15
z = rng.uniform(0.3, 0.99, n) * np.exp(1j * rng.uniform(0, np.pi, n))
a_re, a_im = np.round(z.real * 2**fa), np.round(z.imag * 2**fa)
b_re, b_im, c_re, c_im = rng.integers(-2**15, 2**15, (4, n)).astype(float)
b_shift, c_shift = rng.integers(8, 20, (2, n)).astype(float)
ours = S4dNeuron(shape=(n,), a_re=a_re, a_im=a_im, b_re=b_re, b_im=b_im, c_re=c_re, c_im=c_im,
                 b_shift=b_shift, c_shift=c_shift, a_frac=fa)
theirs = S4d(shape=(n,), a=(a_re + 1j * a_im) * 2.0 ** -fa, b=(b_re + 1j * b_im) * 2.0 ** -b_shift,
             c=(c_re + 1j * c_im) * 2.0 ** -c_shift / 2)
src = Source(data=100 * rng.standard_normal((n, T)))
s1, s2 = Sink(shape=(n,), buffer=T), Sink(shape=(n,), buffer=T)
src.s_out.connect(ours.a_in); src.s_out.connect(theirs.a_in)
ours.s_out.connect(s1.a_in); theirs.s_out.connect(s2.a_in)
src.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
y1, y2 = s1.data.get(), s2.data.get()
src.stop()
res["s4d_max_abs_diff"] = float(np.abs(y1 - y2).max())
res["s4d_identical"] = bool(np.array_equal(y1, y2))
res["s4d_max_abs"] = float(np.abs(y2).max())
# 2. lava_weights: lava's clip/truncate leave our mantissas intact, and the
#    exponent undoes the scale: (sum w' m) >> -exp == (sum w m) >> shift
ok = True
for bits in range(2, 9):
    w = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (5, 7))
    m = rng.integers(-(1 << 23), 1 << 23, 7)
    for shift in range(-3, 12):
        lw, exp, nwb = lava_weights(w, bits, shift)
        kept = truncate_weights(clip_weights(lw, SignMode.MIXED, num_bits=8), SignMode.MIXED, nwb)
        acc = kept.astype(np.int64) @ m
        got = np.left_shift(acc, exp) if exp > 0 else np.right_shift(acc, -exp)
        want = (w @ m) >> shift if shift >= 0 else (w @ m) << -shift
        ok &= bool(np.array_equal(kept, lw)) and bool(np.array_equal(got, want))
res["weights_ok"] = ok
print(json.dumps(res))
"""


@needs_lava
def test_float_model_matches_lava_s4d_and_weight_encoding():
    r = subprocess.run([lava_python(), "-c", LAVA_CHECKS], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["s4d_max_abs"] > 1.0
    assert res["s4d_identical"], res  # same expression, same order: the same doubles
    assert res["weights_ok"]


PRECISIONS = r"""
import inspect, json
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.type import LavaPyType
import s4dc.targets.lava.processes as P
rows = {}
for name, cls in vars(P).items():
    if inspect.isclass(cls) and issubclass(cls, PyLoihiProcessModel) and cls.__module__ == P.__name__:
        rows[name] = {k: v.precision for k, v in inspect.getmembers(cls)
                      if isinstance(v, LavaPyType) and v.precision is not None}
print(json.dumps(rows))
"""


@needs_lava
def test_lava_precisions_are_the_numerics_widths():
    """Every integer precision our Lava models declare is the width
    targets/loihi2/numerics.py gives that quantity."""
    from s4dc.targets.loihi2 import numerics as nm

    r = subprocess.run([lava_python(), "-c", PRECISIONS], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    declared = json.loads(r.stdout.strip().splitlines()[-1])
    width = {"a_in": nm.MESSAGE_BITS, "s_out": nm.MESSAGE_BITS, "data": nm.MESSAGE_BITS, "record": nm.MESSAGE_BITS,
             "bias_mant": nm.BIAS_BITS, "saturations": nm.COUNTER_BITS, "xr": nm.STATE_BITS, "xi": nm.STATE_BITS,
             "b_shift": nm.SHIFT_PARAM_BITS, "c_shift": nm.SHIFT_PARAM_BITS,
             **{k: nm.MAX_COEF_BITS for k in ("a_re", "a_im", "b_re", "b_im", "c_re", "c_im")}}
    fixed = {m for m in declared if m.endswith("Fixed")}
    assert fixed == {"PyMessageSourceFixed", "PyMessageSinkFixed", "PyUnitFixed", "PyS4dNeuronFixed"}
    assert len(declared["PyS4dNeuronFixed"]) == 13
    for model, vars_ in declared.items():
        for var, precision in vars_.items():
            assert precision == width[var], (model, var, precision, width[var])


PLACEMENT_CHECK = r"""
import json, sys, numpy as np, s4dc
from s4dc.targets.lava.plan import plan
from s4dc.targets.lava.build import LavaNetwork
from s4dc.targets.lava.processes import virtual_addresses
out = sys.argv[1]
g = s4dc.load(out).graph
net = LavaNetwork(plan(g, out + "/placement.json"), np.zeros((1, 4, 2)))
rows = {}
for p in list(net.procs.values()) + net.synapses:
    rows[p.name] = [(a.chip_id, a.core_id) for a in virtual_addresses(p)]
print(json.dumps(rows))
"""


@needs_lava
def test_placement_travels_with_the_processes(tmp_path):
    out = quantized_net(tmp_path, 31, H=3, N=2, layers=1)
    (out / "placement.json").write_text(json.dumps({"partitions": [
        {"layer": "a0", "chip": 0, "core": 3}, {"layer": "s0", "chip": 0, "core": 4},
        {"layer": "s0", "chip": 1, "core": 0, "neurons": [3, 6]}]}))
    r = subprocess.run([lava_python(), "-c", PLACEMENT_CHECK, str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout.strip().splitlines()[-1])
    assert rows["a0"] == [[0, 3]] and rows["a0.dense"] == [[0, 3]]
    for name in ("s0", "s0.states", "s0.expand", "s0.sum", "s0.d"):
        assert rows[name] == [[0, 4], [1, 0]], name
    assert rows["dec"] == [] and rows["in"] == []
    # run_lava picks OUT/placement.json up and reports it
    x = np.random.default_rng(0).standard_normal((1, 20, 2)).astype(np.float32)
    y, info = run_lava(out, x, timeout=LAVA_TIMEOUT)
    assert info["placement"].endswith("placement.json")
    import s4dc

    assert np.array_equal(y, FixedSimulator(s4dc.load(out).graph).run(x))


# --- errors (no Lava needed) -----------------------------------------------------------
def test_missing_lava_environment_says_how_to_make_it(tmp_path, monkeypatch):
    out = quantized_net(tmp_path, 41, layers=1)
    monkeypatch.setenv("S4DC_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(LavaSetupError, match=r"make \.venv-lava"):
        run_lava(out, np.zeros((1, 5, 2), np.float32))


def test_float_network_does_not_map(tmp_path):
    rng = np.random.default_rng(0)
    out = tmp_path / "float"
    g = float_graph(rng, 2, 3, 2, 1, None, None)
    Network(g, manifest(g)).save(out)
    with pytest.raises(LavaMappingError, match="not quantized"):
        check(out)


def test_placement_naming_unknown_layers_is_refused(tmp_path):
    out = quantized_net(tmp_path, 42, layers=1)
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"partitions": [{"layer": "nope", "chip": 0, "core": 1}]}))
    with pytest.raises(LavaMappingError, match="nope"):
        check(out, bad)


def test_residual_beyond_synaptic_delay_does_not_fit():
    """A skip connection around more than 63 synapse steps cannot be lined up
    by Loihi 2's synaptic delays."""
    g = Graph("deep")
    g.add(Layer("in", "input", [], "in", {"features": 2}), Tensor("in", 2))
    cur = "in"
    for i in range(MAX_SYNAPSE_DELAY + 2):
        g.add(Layer(f"a{i}", "affine", [cur], f"a{i}", params={"weight": np.eye(2), "bias": np.zeros(2)}),
              Tensor(f"a{i}", 2))
        cur = f"a{i}"
    g.add(Layer("skip", "add", [cur, "in"], "skip"), Tensor("skip", 2))
    g.add(Layer("out", "output", ["skip"], "out", {"layout": ["B", "T", "F"]}), Tensor("out", 2))
    q, _ = PASSES["quantize"](verify(g), SimpleNamespace(calibration_x=np.random.default_rng(0).standard_normal((4, 8, 2)),
                                                         precision={"__default__": BitWidths()}))
    with pytest.raises(LavaMappingError, match="synaptic delay"):
        plan(q)


def test_lava_weight_encoding_fits_lava_ranges():
    """Stored weights stay inside lava's MIXED range [-256, 254] and are
    multiples of 2^(9 - bits), which its truncation keeps."""
    for bits in range(2, 9):
        w = np.arange(-(1 << (bits - 1)), 1 << (bits - 1))
        lw, exp, nwb = lava_weights(w, bits, 3)
        assert lw.min() >= -256 and lw.max() <= 254 and nwb == bits
        assert np.all(lw % (1 << (9 - bits)) == 0) and exp == -(3 + 9 - bits)
    with pytest.raises(LavaMappingError):
        lava_weights(np.zeros(3, np.int64), 9, 0)


@needs_lava
def test_bad_input_is_reported_from_the_lava_side(tmp_path):
    out = quantized_net(tmp_path, 43, layers=1)
    with pytest.raises(InputDataError, match="features|shape"):
        run_lava(out, np.zeros((1, 5, 7), np.float32))


def test_check_reports_latencies(tmp_path):
    """check() maps from OUT/ alone (no Lava, no run): one step per synapse,
    two per S4D layer (into the state neurons, out of them)."""
    out = quantized_net(tmp_path, 44, layers=2, residual="add")
    lat = check(out)["layer_latency"]
    assert (lat["in"], lat["a0"], lat["s0"], lat["a1"], lat["s1"]) == (0, 1, 3, 4, 6)
    assert lat["add1"] == 7 and lat["dec"] == 8 and lat["out"] == 8
    assert check(out)["latency_steps"] == 8


def _with_shifts(tmp_path: Path, a1_shift: int) -> Path:
    """Network 51 with shifts at and below zero (left shifts) in every place
    the IR allows them: synapse shift, D path, B and C shifts."""
    import s4dc

    src = quantized_net(tmp_path, 51, f_in=2, H=3, N=4, layers=2)
    net = s4dc.load(src)
    g = net.graph
    s0, s1 = g.layer("s0"), g.layer("s1")
    s0.params["b_shift"][:, :2] = [0, -3]
    s0.params["c_shift"][:, 1:3] = [0, -2]
    s1.params["b_shift"][0] = -24
    s1.params["c_shift"][1] = -24
    s1.attrs["d_shift"] = -1
    g.layer("a1").attrs["shift"] = a1_shift
    out = tmp_path / f"shifts{a1_shift}"
    Network(verify(g), net.manifest).save(out)
    return out


@needs_lava
def test_extreme_shifts_bit_exact(tmp_path):
    """States and messages pin at their rails; Lava still gives the
    simulator's integers."""
    out = _with_shifts(tmp_path, 0)
    assert check(out)["warnings"] == []
    x = np.random.default_rng(2).standard_normal((1, 200, 2)).astype(np.float32)
    info = assert_bit_exact(out, x)
    assert info["saturations"]["s0"] > 0 and info["saturations"]["s1"] > 0


def test_int32_synapse_overflow_is_flagged(tmp_path):
    """lava's bit-accurate Dense keeps its output in int32: where a synapse's
    shifted accumulation can pass 2^31 (inputs at their rails, a left shift),
    Lava wraps where our semantics saturate. The mapping says so."""
    w = check(_with_shifts(tmp_path, -2))["warnings"]
    assert len(w) == 1 and "'a1'" in w[0] and "int32" in w[0]


FASHION = ROOT / "examples" / "fashion"


@needs_lava
@pytest.mark.skipif(not (FASHION / "model.onnx").exists(), reason="examples/fashion/model.onnx not built yet")
def test_fashion_bit_exact(tmp_path):
    """The Fashion-MNIST example (784-step images): the first 256 steps of two
    test images, back to back."""
    import s4dc

    calib = FASHION / "calibration.npz"
    out = tmp_path / "fashion"
    s4dc.compile(str(FASHION / "model.onnx"), calibration=str(calib) if calib.exists() else None).save(out)
    x = np.load(calib)["x"][:2, :256] if calib.exists() else \
        np.random.default_rng(0).uniform(0, 1, (2, 256, 1)).astype(np.float32)
    assert_bit_exact(out, x)
