"""Reports of MIMO layers (S5-shaped `qmimo`): each MIMO layer is one row of
the layers table, its mode neurons (parts named `LAYER/modes`) counted with
it, its P modes as its states, its quantization widths, shifts, saturations
and error, and its parts on the mesh under its own layer number; in the
summary, the terminal tables and report.html opened in Chromium."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import s4dc
from s4dc.frontend.canonical import CanonicalModel
from s4dc.report import format_text, summary, write_html
from s4dc.report.data import fmt_int

import test_report as tr

T, H, N = 32, 16, 8
MIMO = (("mimo_4", 96, H, 24), ("mimo_6", 64, 24, H))   # (layer, P, H_in, H_out), the writer's node names
# Few neurons per core, so that the first MIMO layer's 96 modes split over three cores.
HARDWARE = {"neurons_per_core": 40}


def _model():
    """An S4D layer, then two MIMO layers (S5's initialization: Lambda with
    real part -1/2, log-uniform dt), in the canonical ONNX form."""
    rng = np.random.default_rng(0)
    m = CanonicalModel(features=1, time=T)
    m.linear(rng.standard_normal((H, 1)), np.zeros(H))
    A = -0.5 + 1j * np.pi * np.tile(np.arange(N), (H, 1))
    m.s4d(np.exp(rng.uniform(np.log(1e-2), np.log(1e-1), H)), A, np.ones((H, N)),
          (rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N))) / 4, rng.standard_normal(H)).relu()
    for _, P, hi, ho in MIMO:
        lam = -0.5 + 1j * np.pi * np.arange(P) / 4
        dt = np.exp(rng.uniform(np.log(1e-2), np.log(1e-1), P))
        B = (rng.standard_normal((P, hi)) + 1j * rng.standard_normal((P, hi))) / np.sqrt(2 * hi)
        C = (rng.standard_normal((ho, P)) + 1j * rng.standard_normal((ho, P))) / np.sqrt(2 * P)
        m.mimo(lam, B, C, rng.standard_normal((ho, hi)) / np.sqrt(hi), dt=dt).relu()
    m.readout("mean").linear(rng.standard_normal((10, H)) / 4, np.zeros(10))
    return m.to_onnx(), rng.uniform(0, 1, (16, T, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def mimo_out(tmp_path_factory) -> Path:
    import onnx

    d = tmp_path_factory.mktemp("report_mimo")
    model, cal = _model()
    onnx.save(model, d / "model.onnx")
    (d / "hw.json").write_text(json.dumps(HARDWARE))
    out = d / "net"
    s4dc.compile(d / "model.onnx", calibration=cal, hardware=str(d / "hw.json"), place_budget=0.5).save(out)
    write_html(out)
    return out


def _json(p: Path):
    return json.loads(p.read_text())


def _owner(part_layer: str) -> str:
    return part_layer[:-len("/modes")] if part_layer.endswith("/modes") else part_layer


def _totals(placement: dict) -> dict[str, dict[str, float]]:
    """Per graph layer, straight from placement.json, its `/modes` parts counted with it."""
    tot: dict[str, dict[str, float]] = {}
    of = {p["id"]: _owner(p["layer"]) for p in placement["partitions"]}
    for p in placement["partitions"]:
        t = tot.setdefault(of[p["id"]], {"cores": 0, "neurons": 0, "state_neurons": 0, "synapses": 0,
                                         "memory_bytes": 0, "messages_in_per_step": 0.0,
                                         "messages_out_per_step": 0.0, "messages_internal_per_step": 0.0})
        t["cores"] += 1
        for k in ("neurons", "state_neurons", "synapses", "memory_bytes"):
            t[k] += p[k]
    for e in placement["edges"]:
        a, b = of[e["src"]], of[e["dst"]]
        if a == b:
            tot[a]["messages_internal_per_step"] += e["messages_per_step"]
        else:
            tot[a]["messages_out_per_step"] += e["messages_per_step"]
            tot[b]["messages_in_per_step"] += e["messages_per_step"]
    return tot


def test_mimo_rows_count_their_modes_parts(mimo_out):
    s, placement = summary(mimo_out), _json(mimo_out / "placement.json")
    graph = s4dc.load(mimo_out).graph
    rows = {r["name"]: r for r in s["layers"]}
    tot = _totals(placement)
    for name, t in tot.items():
        for k, v in t.items():
            assert rows[name][k] == pytest.approx(v, abs=1e-6), (name, k)
    parts = {}
    for p in placement["partitions"]:
        parts.setdefault(p["layer"], []).append(p)
    for name, P, h_in, h_out in MIMO:
        r = rows[name]
        assert graph.layer(name).params["a_re"].shape == (P,)
        modes, units = parts[f"{name}/modes"], parts[name]
        assert r["cores"] == len(modes) + len(units)
        assert r["states"] == r["state_neurons"] == P == sum(p["neurons"] for p in modes)
        assert r["neurons"] == P + h_out and r["features"] == h_out
        # B rows (re, im) into the modes, C (re, im) and D into the output units
        assert r["synapses"] == 2 * P * h_in + h_out * (2 * P + h_in)
        # every mode sends re and im to every output part (mode neurons always send)
        assert r["messages_internal_per_step"] == 2 * P * len(units)
        st = {x["stage"]: x for x in r["stages"]}
        assert (st["modes"]["parts"], st["modes"]["units"]) == (len(modes), P)
        assert (st["units"]["parts"], st["units"]["units"]) == (len(units), h_out)
        lay = next(x for x in placement["layers"] if x["layer"] == name)
        assert r["activity"] == lay["activity"] and r["activation_sparsity"] == lay["activation_sparsity"]
        assert r["latency_steps"] == rows[r["inputs"][0]]["latency_steps"] + 2   # two synapse stages
    assert len(parts["mimo_4/modes"]) == 3   # 96 modes on 40-neuron cores
    # the layers' rows cover every part: their synaptic ops add up to the cost model's
    c = s["cost"]["per_placement"]["optimized"]
    assert sum(r.get("synops_per_step", 0) for r in s["layers"]) == pytest.approx(c["synops_per_step"])
    assert sum(r.get("cores", 0) for r in s["layers"]) == len(placement["partitions"]) == c["cores"]
    # the S4D layer's states beside them: H channels of N
    assert rows["s4d_2"]["states"] == rows["s4d_2"]["state_neurons"] == H * N
    # every part on the mesh carries its layer's number, a mode part its MIMO layer's
    index = {r["name"]: r["index"] for r in s["layers"] if r.get("index")}
    for p in s["placement"]["parts"]:
        assert p["of"] == _owner(p["layer"]) and p["layer_index"] == index[p["of"]]
        assert p["stage"] == ("modes" if p["layer"].endswith("/modes") else None)


def test_mimo_quantization_rows(mimo_out):
    s, manifest = summary(mimo_out), _json(mimo_out / "manifest.json")
    graph = {L["name"]: L for L in _json(mimo_out / "graph.json")["layers"]}
    q = next(r for r in manifest["passes"] if r["pass"] == "quantize")["changes"]["layers"]
    got = {r["name"]: r for r in s["quantization"]["layers"]}
    for name, P, _, _ in MIMO:
        r, e, a = got[name], q[name], graph[name]["attrs"]
        assert r["op"] == "qmimo" and r["modes"] == P
        b = e["bits"]
        # B and C are synapse weights: their widths are the weight width
        assert r["bits_used"] == [b["weight"], b["a"], b["weight"], b["weight"], b["state"], b["message"]]
        for k in ("saturations", "rel_rms_error", "exp_out", "a_frac", "state_exp", "max_abs_eigenvalue"):
            assert r[k] == e[k], (name, k)
        for k in ("x_shift", "c_shift", "d_shift"):
            assert r[k] == a[k], (name, k)
    b = q["s4d_2"]["bits"]   # an S4D layer keeps its own b and c widths
    assert got["s4d_2"]["bits_used"] == [b[k] for k in ("weight", "a", "b", "c", "state", "message")]


def _table_rows(text: str, title: str) -> dict[str, list[str]]:
    """The rows of one terminal table (after the line `title`), by first
    named column, cells split on runs of two or more spaces."""
    lines = text.splitlines()
    i = lines.index(title)
    head = lines[i + 1]
    out: dict[str, list[str]] = {}
    for ln in lines[i + 3:]:
        if not ln.strip():
            break
        cells = re.split(r"\s{2,}", ln.strip())
        out[cells[1] if cells[0].startswith("L") and len(cells) > 1 and head.strip().startswith("#")
            else cells[0]] = cells
    return out


def test_mimo_layers_in_the_terminal_tables(mimo_out):
    s = summary(mimo_out)
    text = format_text(s)
    rows = {r["name"]: r for r in s["layers"]}
    layers = _table_rows(text, "layers:")
    for name, P, _, h_out in MIMO:
        r = rows[name]
        cells = layers[name]
        assert cells[:8] == [f"L{r['index']}", name, "qmimo", "chip", str(h_out), str(P), fmt_int(r["params"]),
                             str(r["cores"])]
        assert cells[8] == fmt_int(r["neurons"]) and cells[9] == fmt_int(r["synapses"])
    quant = _table_rows(text, next(ln for ln in text.splitlines() if ln.startswith("quantization (")))
    got = {r["name"]: r for r in s["quantization"]["layers"]}
    for name, _, _, _ in MIMO:
        b = got[name]["bits"]
        assert quant[name][:3] == [name, "qmimo", f"{b['weight']}/{b['a']}/{b['weight']}/{b['weight']}/"
                                                  f"{b['state']}/{b['message']}"]
        assert f"c_shift {got[name]['c_shift']}" in quant[name][4]
        assert quant[name][5] == str(got[name]["saturations"]) and quant[name][6] == f"{got[name]['rel_rms_error']:.2e}"
    # the text mesh: each layer's number on as many cores as it has parts, modes included
    mesh = text.split("optimized placement (layer number on each core, . free):\n")[1].split("\n\n")[0]
    numbers = [int(t) for t in re.findall(r"\b\d+\b", "\n".join(ln for ln in mesh.splitlines() if "free)" not in ln))]
    for r in s["layers"]:
        if r.get("index"):
            assert numbers.count(r["index"]) == r["cores"], r["name"]


@tr.needs_chromium
def test_mimo_report_in_chromium(mimo_out, tmp_path):
    placement = _json(mimo_out / "placement.json")
    dom = tr.open_in_chromium(mimo_out / "report.html", tmp_path)
    tr._assert_clean(dom)
    layers = {r["attrs"]["data-layer"]: r for r in dom.table("layers-table")}
    for name, t in _totals(placement).items():
        for k in ("cores", "neurons", "synapses", "memory_bytes", "messages_in_per_step", "messages_out_per_step"):
            assert float(layers[name]["v"][k]) == pytest.approx(t[k], abs=1e-6), (name, k)
    for name, P, _, _ in MIMO:
        assert int(layers[name]["v"]["states"]) == P
    used = [c for c in dom.svgs["optimized"]["cores"] if "data-part" in c]
    assert len(used) == len(placement["partitions"])
    for c in used:   # a mode part highlights with its MIMO layer
        assert c["data-layer"] == _owner(placement["partitions"][int(c["data-part"])]["layer"])
    quant = {r["attrs"]["data-qlayer"]: r for r in dom.table("quant-table")}
    q = next(r for r in _json(mimo_out / "manifest.json")["passes"] if r["pass"] == "quantize")["changes"]["layers"]
    for name, _, _, _ in MIMO:
        b = q[name]["bits"]
        assert quant[name]["text"]["bits"] == f"{b['weight']}/{b['a']}/{b['weight']}/{b['weight']}/{b['state']}/" \
                                              f"{b['message']}"
        assert int(quant[name]["v"]["saturations"]) == q[name]["saturations"]
        assert float(quant[name]["v"]["rel_rms_error"]) == pytest.approx(q[name]["rel_rms_error"])
    html = (mimo_out / "report.html").read_text()
    assert "mimo_4 modes (qmimo), modes 0-" in html   # the mode parts' tooltips


def test_float_only_mimo_rows_hold_their_modes(tmp_path):
    """Without quantization or placement a MIMO row still shows its P modes
    (the diagonal A's), and no resources."""
    import onnx

    model, _ = _model()
    onnx.save(model, tmp_path / "model.onnx")
    s4dc.compile(tmp_path / "model.onnx", float_only=True).save(tmp_path / "net")
    s = summary(tmp_path / "net")
    rows = {r["name"]: r for r in s["layers"]}
    for name, P, _, h_out in MIMO:
        assert (rows[name]["op"], rows[name]["states"], rows[name]["features"]) == ("mimo", P, h_out)
        assert "cores" not in rows[name]
    assert rows["s4d_2"]["states"] == H * N
    assert _table_rows(format_text(s), "layers:")["mimo_4"][4:6] == ["24", "96"]
