"""Reports (s4dc.report): the summary holds the compiled network's numbers,
the text and JSON forms, errors on a bad OUT/, a float-only OUT/, and
report.html opened in a real headless Chromium (no console error, one mesh
cell per core, the tables' numbers, load time, size)."""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import s4dc
from s4dc.errors import NetworkFormatError, S4dcError
from s4dc.report import cost, format_text, main, summary, write_html
from s4dc.report.data import fmt_int

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (`make chromium`: apt-get install -y chromium); "
                             "the report's browser checks need it")
MAX_BYTES = 2 * 1024 * 1024
# A small multi-chip system: 8 digits parts on 4-core chips, 3 chips configured.
SMALL_CHIPS = {"cores_per_chip": 4, "mesh": [2, 2], "chips": 3}


@pytest.fixture(scope="module")
def digits_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "digits"
    s4dc.compile(DIGITS / "model.onnx", calibration=str(DIGITS / "calibration.npz"), place_budget=1.0).save(out)
    write_html(out)
    return out


@pytest.fixture(scope="module")
def multichip_out(digits_out, tmp_path_factory) -> Path:
    """The digits network placed on SMALL_CHIPS (what `--hardware` gives), written into a copy of OUT/."""
    from s4dc.passes.partition import partition
    from s4dc.passes.place import place, placement_json
    from s4dc.targets.loihi2.hardware import load_spec

    out = tmp_path_factory.mktemp("report") / "multichip"
    shutil.copytree(digits_out, out)
    spec = load_spec(SMALL_CHIPS)
    doc = place(partition(s4dc.load(out).graph, spec), spec, seed=0, budget=0.2)
    (out / "placement.json").write_text(placement_json(doc))
    write_html(out)
    return out


@pytest.fixture(scope="module")
def float_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "float"
    s4dc.compile(DIGITS / "model.onnx", float_only=True).save(out)
    write_html(out)
    return out


def _json(p: Path):
    return json.loads(p.read_text())


def _layer_totals(placement: dict) -> dict[str, dict[str, float]]:
    """Per layer, straight from placement.json: cores, neurons, synapses, memory, messages in and out."""
    tot: dict[str, dict[str, float]] = {}
    layer_of = {p["id"]: p["layer"] for p in placement["partitions"]}
    for p in placement["partitions"]:
        t = tot.setdefault(p["layer"], {"cores": 0, "neurons": 0, "synapses": 0, "memory_bytes": 0,
                                        "messages_in_per_step": 0, "messages_out_per_step": 0})
        t["cores"] += 1
        for k in ("neurons", "synapses", "memory_bytes"):
            t[k] += p[k]
    for e in placement["edges"]:
        a, b = layer_of[e["src"]], layer_of[e["dst"]]
        if a != b:
            tot[a]["messages_out_per_step"] += e["messages_per_step"]
            tot[b]["messages_in_per_step"] += e["messages_per_step"]
    return tot


# ---------------------------------------------------------------------------
def test_summary_holds_the_compiled_numbers(digits_out):
    s = summary(digits_out)
    manifest, placement = _json(digits_out / "manifest.json"), _json(digits_out / "placement.json")
    assert s["missing"] == []
    assert s["network"]["quantized"] and s["network"]["placed"]
    rows = {r["name"]: r for r in s["layers"]}
    for name, t in _layer_totals(placement).items():
        for k, v in t.items():
            assert rows[name][k] == v, (name, k)
    q = next(r for r in manifest["passes"] if r["pass"] == "quantize")["changes"]
    got = {r["name"]: r for r in s["quantization"]["layers"]}
    assert set(got) == set(q["layers"])
    for name, e in q["layers"].items():
        assert got[name]["saturations"] == e["saturations"]
        assert got[name]["rel_rms_error"] == e["rel_rms_error"]
        assert got[name]["exp_out"] == e["exp_out"]
    assert s["quantization"]["output_rel_rms_error"] == q["output_rel_rms_error"]
    assert [p["pass"] for p in s["passes"]] == [r["pass"] for r in manifest["passes"]]
    timings = _json(digits_out / "timings.json")
    assert s["passes"][2]["seconds"] == timings[f"02_{manifest['passes'][2]['pass']}"]
    for name in ("naive", "greedy", "optimized"):
        for k in ("traffic", "objective", "max_router_load", "message_hops", "chip_crossings"):
            assert s["placement"]["placements"][name]["metrics"][k] == placement["placements"][name][k]
    assert s["placement"]["gap"] == placement["gap"]
    json.dumps(s, allow_nan=False)  # plain JSON


@pytest.mark.parametrize("which", ["digits_out", "multichip_out"])
def test_links_follow_xy_routes(which, request):
    """Link loads along X-Y routes add up to placement.json's message hops and chip crossings."""
    out = request.getfixturevalue(which)
    s, placement = summary(out), _json(out / "placement.json")
    for name, view in s["placement"]["placements"].items():
        links = view["links"]
        assert sum(l["messages_per_step"] for l in links) == \
            pytest.approx(placement["placements"][name]["message_hops"])
        assert sum(l["messages_per_step"] for l in links if l["chip_link"]) == \
            pytest.approx(placement["placements"][name]["chip_crossings"])
        for l in links:  # every link joins mesh neighbours
            assert abs(l["a"][0] - l["b"][0]) + abs(l["a"][1] - l["b"][1]) == 1
    if which == "multichip_out":
        assert s["placement"]["system"]["chips_used"] == 2
        assert any(l["chip_link"] for l in s["placement"]["placements"]["optimized"]["links"])


def test_cost_model_adds_up(digits_out):
    s = summary(digits_out)
    place = s["placement"]
    c = s["cost"]["per_placement"]["optimized"]
    parts = place["parts"]
    synops = sum(p["synops_per_step"] + p["internal_synops_per_step"] for p in parts)
    assert c["synops_per_step"] == synops
    assert c["energy_synops_j"] == pytest.approx(synops * cost.E_SYNOP.value)
    dendops = sum((p["neurons"] - p["state_neurons"]) + 2 * p["state_neurons"] for p in parts)
    assert c["neuron_updates_per_step"] == dendops
    assert c["energy_neurons_j"] == pytest.approx(dendops * cost.E_DEND.value)
    links = place["placements"]["optimized"]["links"]
    msgs = sum(e["messages_per_step"] for e in place["edges"])
    e_msg = msgs * cost.E_SPIKE.value + sum(
        l["messages_per_step"] * (cost.E_HOP_X.value if l["a"][1] == l["b"][1] else cost.E_HOP_Y.value)
        for l in links)  # one chip: no chip-to-chip link
    assert c["energy_messages_j"] == pytest.approx(e_msg)
    chips = place["system"]["chips_used"]
    assert c["energy_step_j"] == pytest.approx(chips * cost.E_STEP.value)   # per chip in use, each step
    # static: every chip in use, and each core in use on top, for the step's time
    assert c["energy_static_j"] == pytest.approx((chips * cost.P_CHIP.value + len(parts) * cost.P_CORE.value)
                                                 * c["time_per_step_s"])
    assert c["energy_per_token_j"] == pytest.approx(c["energy_synops_j"] + c["energy_neurons_j"]
                                                    + c["energy_messages_j"] + c["energy_step_j"]
                                                    + c["energy_static_j"])
    # a core's time: the largest of its neuron updates, synaptic ops and synaptic memory reads
    busiest = max(max(p["synops"] * cost.T_SYNOP.value,
                      p["synops"] * cost.SYNMEM_BYTES_PER_SYNOP.value * cost.T_SYNMEM.value,
                      ((p["neurons"] - p["state_neurons"]) + 2 * p["state_neurons"]) * cost.T_DEND.value)
                  for p in parts)
    assert c["busiest_core_s"] == pytest.approx(busiest)
    router = place["placements"]["optimized"]["metrics"]["max_router_load"]
    assert c["messages_s"] == pytest.approx(router * 32 * cost.T_BIT.value)
    assert c["time_per_step_s"] == pytest.approx(max(busiest, c["messages_s"]) + cost.T_BARRIER_CHIP.value)
    # digits: 5 affines (1 step each) and 3 S4D layers (2 each) between input and output, as Lava
    assert c["depth_steps"] == 11
    assert c["latency_per_token_s"] == pytest.approx(11 * c["time_per_step_s"])
    names = {f["name"] for f in s["cost"]["figures"]}
    assert {"E_synop", "E_dend", "T_synop", "T_dend", "T_bit", "T_barrier_chip", "P_static_core"} <= names
    assert all(f["source"] for f in s["cost"]["figures"])


def test_tradeoff_and_sparsity_come_from_the_compile(digits_out):
    """The splits considered and the per-layer sparsity: placement.json's, measured on calibration data."""
    from s4dc.passes.partition import MEASURE_SAMPLES
    from s4dc.targets.fixed_sim import FixedSimulator

    s, placement = summary(digits_out), _json(digits_out / "placement.json")
    t = s["placement"]["tradeoff"]
    search = placement["partition_search"]
    assert {k: t[k] for k in search} == search
    chosen = t["candidates"][t["chosen"]]
    assert t["objective"] == "cores" and t["chosen"] == t["best"]["cores"] == 0
    assert chosen["cores"] == len(placement["partitions"])
    assert t["chosen_placed"]["cores"] == chosen["cores"]
    assert t["chosen_placed"]["latency_per_token_s"] == \
        s["cost"]["per_placement"]["optimized"]["latency_per_token_s"]
    # per-layer activation sparsity: the bit-exact run of the first calibration sequences
    net = s4dc.load(digits_out)
    x = __import__("numpy").load(DIGITS / "calibration.npz")["x"][:MEASURE_SAMPLES]
    tr = FixedSimulator(net.graph).trace(x)
    rows = {r["name"]: r for r in s["layers"]}
    relu = [l.name for l in net.graph.layers if l.attrs.get("relu")]
    for name in relu:
        v = tr[name]
        assert rows[name]["activation_sparsity"] == pytest.approx((v == 0).sum() / v.size, abs=1e-6)
        assert 0.3 < rows[name]["activation_sparsity"] < 1
    sw = s["placement"]["sparsity_sweep"]
    assert sw["samples"] == MEASURE_SAMPLES and sw["steps"] == x.shape[1]
    e = [p["energy_per_token_j"] for p in sw["sweep"]]
    assert all(a >= b for a, b in zip(e, e[1:])) and e[-1] < e[0]   # sparser: less energy
    assert sw["sweep"][-1]["mean_sparsity"] == 1.0 and sw["sweep"][-1]["mean_activity"] == 0.0


def test_latency_objective_and_constraints_through_the_compile(digits_out, tmp_path, capsys):
    from s4dc.cli import main as cli_main
    from s4dc.passes.partition import ConstraintError

    net = s4dc.compile(DIGITS / "model.onnx", calibration=str(DIGITS / "calibration.npz"), place_budget=0.2,
                       objective="latency")
    t = net.placement["partition_search"]
    cores_run = _json(digits_out / "placement.json")["partition_search"]
    assert t["candidates"] == cores_run["candidates"]   # the same splits, another choice
    lat, few = t["candidates"][t["chosen"]], t["candidates"][t["best"]["cores"]]
    assert t["chosen"] == t["best"]["latency"] and lat["cores"] > few["cores"]
    assert lat["latency_per_token_s"] < few["latency_per_token_s"]
    assert len(net.placement["partitions"]) == lat["cores"]
    with pytest.raises(ConstraintError, match="^max_cores 3: the network needs at least 8 cores"):
        s4dc.compile(DIGITS / "model.onnx", calibration=str(DIGITS / "calibration.npz"), max_cores=3)
    out = tmp_path / "never"
    assert cli_main([str(DIGITS / "model.onnx"), "-o", str(out), "--max-latency-us", "0.5", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("s4dc: error: max_latency_us 0.5: the lowest modelled latency")
    assert not out.exists()


def test_text_json_and_cli(digits_out, capsys):
    placement = _json(digits_out / "placement.json")
    assert main([str(digits_out)]) == 0
    text = capsys.readouterr().out
    assert text == format_text(summary(digits_out)) + "\n"
    for needle in ("placement:", "layers:", "quantization", "passes", "estimated per token", "assumptions:",
                   "node_Conv_40", fmt_int(placement['placements']['optimized']['traffic']),
                   "partition objective cores",
                   "modelled energy per token vs activation sparsity"):
        assert needle in text
    assert main([str(digits_out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "s4dc-report"
    assert data["placement"]["placements"]["optimized"]["metrics"]["traffic"] == \
        placement["placements"]["optimized"]["traffic"]
    report = digits_out / "report.html"
    report.unlink()
    assert main([str(digits_out), "--html"]) == 0
    assert "report.html" in capsys.readouterr().out and report.is_file()
    assert main([str(digits_out / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("s4dc: error: ") and "nowhere" in err and len(err.strip().splitlines()) == 1


def test_bad_out_folders(tmp_path, digits_out):
    with pytest.raises(NetworkFormatError, match="no such folder"):
        summary(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NetworkFormatError, match="not a folder"):
        summary(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NetworkFormatError, match="manifest.json is missing"):
        summary(empty)
    bad = tmp_path / "bad"
    shutil.copytree(digits_out, bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(NetworkFormatError, match="unreadable manifest"):
        summary(bad)
    m = _json(digits_out / "manifest.json")
    (bad / "manifest.json").write_text(json.dumps({**m, "format_version": 99}))
    with pytest.raises(NetworkFormatError, match="version 99"):
        summary(bad)
    (bad / "manifest.json").write_text(json.dumps(m))
    (bad / "placement.json").write_text(json.dumps({"format": "s4dc-placement", "spec": {}}))
    with pytest.raises(NetworkFormatError, match="inconsistent"):
        write_html(bad)
    (bad / "graph.json").unlink()
    with pytest.raises(S4dcError, match="graph.json is missing"):
        summary(bad)


def test_float_only_report_says_what_is_missing(float_out):
    s = summary(float_out)
    assert not s["network"]["quantized"] and s["placement"] is None and s["quantization"] is None
    assert s["cost"] is None
    missing = " ".join(s["missing"])
    assert "--float" in missing and "placement" in missing and "quantization" in missing
    text = format_text(s)
    assert "not in this report:" in text and "node_Conv_40" in text
    html = (float_out / "report.html").read_text()
    assert "Not in this report" in html and 'class="mesh"' not in html


@pytest.mark.parametrize("which", ["digits_out", "multichip_out", "float_out"])
def test_html_self_contained_and_small(which, request):
    path = request.getfixturevalue(which) / "report.html"
    html = path.read_text()
    assert path.stat().st_size < MAX_BYTES
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and " src=" not in html and "@import" not in html


# -- in a real browser -----------------------------------------------------------
class _Dom(HTMLParser):
    """What the tests read from Chromium's serialized DOM."""

    def __init__(self):
        super().__init__()
        self.root: dict = {}
        self.svgs: dict[str, dict[str, list]] = {}
        self.figs: dict[str, dict[str, list]] = {}
        self.rows: list[dict] = []
        self.ids: set[str] = set()
        self._svg = self._row = self._table = self._td = self._fig = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "html":
            self.root = a
        elif tag == "svg" and "mesh" in (a.get("class") or "").split():
            self._svg = self.svgs.setdefault(a["data-placement"], {"cores": [], "links": []})
        elif tag == "svg" and "fig" in (a.get("class") or "").split():
            self._fig = self.figs.setdefault(a["id"], {"pts": [], "marks": []})
        elif self._fig is not None and tag == "circle":
            self._fig["pts"].append(a)
        elif self._fig is not None and "data-mark" in a:
            self._fig["marks"].append(a)
        elif self._svg is not None and "data-core" in a:
            self._svg["cores"].append(a)
        elif self._svg is not None and tag == "line":
            self._svg["links"].append(a)
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "tr":
            self._row = {"table": self._table, "attrs": a, "v": {}, "text": {}}
            self.rows.append(self._row)
        elif tag == "td" and self._row is not None and "data-k" in a:
            key = a["data-k"] + (f"@{a['data-placement']}" if "data-placement" in a else "")
            self._row["v"][key] = a.get("data-v")
            self._td = key

    def handle_data(self, data):
        if self._td is not None and self._row is not None:
            self._row["text"][self._td] = self._row["text"].get(self._td, "") + data

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = self._fig = None
        elif tag == "td":
            self._td = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def table(self, tid: str) -> list[dict]:
        """The body rows of table `tid` (they carry data attributes; the header row does not)."""
        return [r for r in self.rows if r["table"] == tid and r["attrs"]]


def open_in_chromium(path: Path, tmp_path: Path) -> _Dom:
    """Load the page headless; return its DOM after the load event. Fails on
    any JS error or console message (the page records errors into the DOM,
    and Chromium logs console output to stderr)."""
    profile = tmp_path / f"chromium-{path.parent.name}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", path.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = _Dom()
    dom.feed(r.stdout)
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln and path.name in ln]
    dom.console = console  # type: ignore[attr-defined]
    return dom


def _assert_clean(dom: _Dom) -> None:
    errors = {k: v for k, v in dom.root.items() if k.startswith("data-js-error")}
    assert not errors, errors
    assert not dom.console, dom.console  # type: ignore[attr-defined]
    assert dom.root.get("data-ready") == "1", "the page's script did not run to its load handler"
    assert float(dom.root["data-load-ms"]) >= 0  # timed by the page; the goal lives in benchmarks/report_load.py


@needs_chromium
def test_report_in_chromium(digits_out, tmp_path):
    placement = _json(digits_out / "placement.json")
    manifest = _json(digits_out / "manifest.json")
    spec = placement["spec"]
    dom = open_in_chromium(digits_out / "report.html", tmp_path)
    _assert_clean(dom)
    # the mesh: one cell per core of the configured chip(s), the parts where placement.json puts them
    assert set(dom.svgs) == {"naive", "optimized"}
    for name, svg in dom.svgs.items():
        cores = svg["cores"]
        assert len(cores) == spec["cores_per_chip"] * spec["chips"]
        assert sorted(int(c["data-core"]) for c in cores) == list(range(spec["cores_per_chip"] * spec["chips"]))
        used = {int(c["data-core"]): int(c["data-part"]) for c in cores if "data-part" in c}
        assert used == {g: i for i, g in enumerate(placement["placements"][name]["cores"])}
        assert svg["links"], "no link drawn"
    # tables: the compiled network's numbers
    layers = {r["attrs"]["data-layer"]: r for r in dom.table("layers-table")}
    for name, t in _layer_totals(placement).items():
        for k, v in t.items():
            assert float(layers[name]["v"][k]) == v, (name, k)
    conv = next(p for p in placement["partitions"] if p["op"] == "qssm")
    assert layers[conv["layer"]]["text"]["neurons"] == f"{conv['neurons']:,}"
    quant = {r["attrs"]["data-qlayer"]: r for r in dom.table("quant-table")}
    q = next(r for r in manifest["passes"] if r["pass"] == "quantize")["changes"]["layers"]
    assert set(quant) == set(q)
    for name, e in q.items():
        assert int(quant[name]["v"]["saturations"]) == e["saturations"]
        assert float(quant[name]["v"]["rel_rms_error"]) == pytest.approx(e["rel_rms_error"])
    pl = {r["attrs"]["data-placement"]: r for r in dom.table("placements-table")}
    for name in ("naive", "greedy", "optimized"):
        for k in ("traffic", "objective", "max_router_load"):
            assert float(pl[name]["v"][k]) == placement["placements"][name][k]
    assert float(pl["bound"]["v"]["objective"]) == placement["bound"]["lower_bound"]
    passes = dom.table("passes-table")
    assert [r["attrs"]["data-pass"] for r in passes] == [r["pass"] for r in manifest["passes"]]
    s = summary(digits_out)
    cost_rows = [r for r in dom.rows if r["table"] == "cost-table"]
    energy = next(r for r in cost_rows if "energy_per_token_j@optimized" in r["v"])
    assert float(energy["v"]["energy_per_token_j@optimized"]) == \
        pytest.approx(s["cost"]["per_placement"]["optimized"]["energy_per_token_j"])
    assert {"cost", "quantization", "passes", "layers", "mesh", "tradeoff"} <= dom.ids
    for name, r in layers.items():   # sends and sparsity per layer, from placement.json
        lay = next((x for x in placement["layers"] if x["layer"] == name), None)
        if lay is not None:
            assert float(r["v"]["activation_sparsity"]) == lay["activation_sparsity"], name
            assert float(r["v"]["activity"]) == lay["activity"], name
    # the trade-off figures: one point per split, the chosen one ringed, the cores and latency optima marked
    search = placement["partition_search"]
    for fig, key in (("pareto-latency", "latency_per_token_s"), ("pareto-energy", "energy_per_token_j")):
        pts = dom.figs[fig]["pts"]
        assert [(float(p["data-x"]), float(p["data-y"])) for p in pts] == \
            [(c["cores"], c[key]) for c in search["candidates"]]
        ringed = [int(p["data-i"]) for p in pts if "chosen" in p["class"].split()]
        assert ringed == [search["chosen"]]
        marks = {m["data-i"]: m["data-mark"] for m in dom.figs[fig]["marks"]}
        assert "C" in marks[str(search["best"]["cores"])] and "L" in marks[str(search["best"]["latency"])]
    assert search["best"]["cores"] != search["best"]["latency"]
    sweep = [(float(p["data-x"]), float(p["data-y"])) for p in dom.figs["sparsity-energy"]["pts"]]
    assert sweep == [(p["mean_sparsity"], p["energy_per_token_j"]) for p in placement["activity_measured"]["sweep"]]


@needs_chromium
def test_multichip_report_in_chromium(multichip_out, tmp_path):
    placement = _json(multichip_out / "placement.json")
    dom = open_in_chromium(multichip_out / "report.html", tmp_path)
    _assert_clean(dom)
    for svg in dom.svgs.values():
        assert len(svg["cores"]) == SMALL_CHIPS["cores_per_chip"] * SMALL_CHIPS["chips"]
        assert {c["data-chip"] for c in svg["cores"]} == {"0", "1", "2"}
        assert sum("data-part" in c for c in svg["cores"]) == len(placement["partitions"])
    assert any("xchip" in (ln.get("class") or "") for ln in dom.svgs["optimized"]["links"])
    # a placement.json written by place() alone (no partition search, no measured activity): no trade-off section
    assert summary(multichip_out)["placement"]["tradeoff"] is None and "tradeoff" not in dom.ids


@needs_chromium
def test_float_report_in_chromium(float_out, tmp_path):
    dom = open_in_chromium(float_out / "report.html", tmp_path)
    _assert_clean(dom)
    assert not dom.svgs and "missing" in dom.ids
    assert len(dom.table("layers-table")) == len(_json(float_out / "graph.json")["layers"])


@needs_chromium
def test_browser_check_catches_script_errors(digits_out, tmp_path):
    """The harness itself: a page with a failing script or a console.error must not pass."""
    broken = tmp_path / "broken"
    broken.mkdir()
    html = (digits_out / "report.html").read_text()
    page = broken / "report.html"
    page.write_text(html.replace("</body>", "<script>console.error('boom');no_such_function();</script></body>"))
    dom = open_in_chromium(page, tmp_path)
    assert dom.root.get("data-js-errors") == "2"
    with pytest.raises(AssertionError):
        _assert_clean(dom)
