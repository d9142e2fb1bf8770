"""What one fuzz case is: a mutated model compiled (and run), or a corrupted
OUT/ folder loaded, run and reported. Case `i` of seed `s` is built from
`np.random.default_rng([s, i])` alone, so any case can be rerun by number."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from fuzzing.mutate import mutate

ROOT = Path(__file__).resolve().parents[2]
TORCH, SCAN = ROOT / "tests/fixtures/torch", ROOT / "tests/fixtures/scan"
# (file, compile options it needs). The bad_* fixtures are bases too: their
# mutants reach the error paths from other directions.
MODEL_BASES: list[tuple[str, dict]] = [
    *[(str(p.relative_to(ROOT)), {"seq_len": 64} if "dyn_time" in p.name else {})
      for p in sorted(TORCH.glob("*.onnx")) + sorted(SCAN.glob("*.onnx"))
      if p.name not in ("bad_truncated.onnx", "bad_not_onnx.onnx")],  # no proto to mutate
    ("examples/digits/model.onnx", {}),
    ("examples/fashion/model.onnx", {"float_only": True}),
    ("examples/fashion/model_w4_qat.onnx", {"float_only": True}),  # 784 steps: quantizing takes ~30 s
    ("canonical:S4D", {}), ("canonical:S4DBilinear", {}),
]
# Compiled networks whose OUT/ folders are corrupted: (model, options).
NET_BASES: list[tuple[str, dict]] = [
    ("tests/fixtures/scan/scan_dense.onnx", {"place_budget": 0.2}),
    ("tests/fixtures/torch/ns4d_last_torchscript.onnx", {"float_only": True}),
    ("tests/fixtures/scan/scan_two_layers.onnx", {"place": False}),
]
RUN_SHARE = 0.15  # of cases: corrupted OUT/ folders and run inputs


@dataclass
class Outcome:
    index: int
    kind: str  # "model" or "net"
    base: str
    mutation: list[str]
    outcome: str  # compiled | s4dc | internal | other | hang | crash
    detail: str = ""  # the error class, or the exception text
    site: str = ""  # where a non-S4dcError was raised (file:line)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def canonical_model(op: str) -> onnx.ModelProto:
    """A small canonical-form model (deterministic), for function-body mutants."""
    from s4dc.frontend.canonical import CanonicalModel

    rng = np.random.default_rng(11)
    H, N = 4, 3
    A = -rng.uniform(0.1, 1.0, (H, N)) + 1j * rng.uniform(0, 3, (H, N))
    m = CanonicalModel(features=2, time=24).linear(rng.standard_normal((H, 2)), rng.standard_normal(H))
    m.s4d(rng.uniform(0.01, 0.1, H), A, rng.standard_normal((H, N)) + 0j, rng.standard_normal((H, N)) + 0j,
          rng.standard_normal(H), discretization={"S4D": "zoh", "S4DBilinear": "bilinear"}[op])
    return m.relu().readout("mean").linear(rng.standard_normal((3, H))).to_onnx()


_MODELS: dict[str, onnx.ModelProto] = {}


def base_model(name: str) -> onnx.ModelProto:
    if name not in _MODELS:
        if name.startswith("canonical:"):
            _MODELS[name] = canonical_model(name.split(":")[1])
        else:
            m = onnx.ModelProto()
            m.ParseFromString((ROOT / name).read_bytes())
            _MODELS[name] = m
    return _MODELS[name]


def site_of(exc: BaseException) -> str:
    """The innermost frame in s4dc's own code (else the innermost one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if str(ROOT) in f.filename and "/tests/" not in f.filename
            and "/.venv" not in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    path = Path(f.filename)
    rel = path.relative_to(ROOT) if str(path).startswith(str(ROOT)) else path.name
    return f"{rel}:{f.lineno} ({f.name}) {type(exc).__name__}"


def classify(exc: BaseException | None) -> tuple[str, str, str]:
    """(outcome, detail, site) of an exception (None: it worked)."""
    from s4dc.errors import InternalError, S4dcError

    if exc is None:
        return "compiled", "", ""
    if isinstance(exc, InternalError):
        cause = exc.__cause__ or exc
        return "internal", str(exc)[:300], site_of(cause)
    if isinstance(exc, S4dcError):
        msg = str(exc)
        if "\n" in msg or not msg.strip():
            return "other", f"{type(exc).__name__} with a message of {msg.count(chr(10)) + 1} lines", site_of(exc)
        return "s4dc", type(exc).__name__, ""
    return "other", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}", \
        site_of(exc)


def model_case(rng: np.random.Generator, index: int) -> tuple[str, list[str], callable]:
    base, opts = MODEL_BASES[index % len(MODEL_BASES)]
    what, mutant = mutate(rng, base_model(base))
    opts = dict(opts, place=False, jobs=1)
    if rng.random() < 0.5:
        opts["float_only"] = True
    if rng.random() < 0.15:  # the passes' own limits, at their edges
        key = str(rng.choice(["max_modes", "fit_tol", "cond_max", "verify_numerics"]))
        opts[key] = {"max_modes": int(rng.choice([1, 2, 64])), "fit_tol": float(rng.choice([1e-12, 0.5])),
                     "cond_max": float(rng.choice([1.0, 1e3])), "verify_numerics": True}[key]
    if any("dynamic" in w for w in what) or rng.random() < 0.1:
        opts["seq_len"] = int(rng.choice([1, 16, 64, 200]))
    if rng.random() < 0.1:
        opts["strict"] = True
    what.append(f"options {opts}")
    x_seed = int(rng.integers(1 << 30))

    def run() -> None:
        import s4dc

        net = s4dc.compile(mutant, **opts)
        feats = net.graph.input_layer.attrs["features"]
        T = int(net.graph.meta.get("time_steps") or 8)
        x = np.random.default_rng(x_seed).standard_normal((2, min(T, 256), feats)).astype(np.float32)
        net.run(x)
    return base, what, run


def _corrupt_json(rng, path: Path) -> str:
    doc = json.loads(path.read_text())
    node, where = doc, path.name
    for _ in range(int(rng.integers(1, 4))):  # walk down a few levels
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        k = keys[int(rng.integers(len(keys)))]
        if rng.random() < 0.4 or not isinstance(node[k], (dict, list)):
            value = [None, [], {}, "x", -1, 0, 1e308, True, 2 ** 40][int(rng.integers(9))]
            if isinstance(node, dict) and rng.random() < 0.4:
                del node[k]
                path.write_text(json.dumps(doc))
                return f"{where}: deleted {k!r}"
            node[k] = value
            path.write_text(json.dumps(doc))
            return f"{where}: {k!r} = {value!r}"
        node, where = node[k], f"{where}/{k}"
    if rng.random() < 0.5:
        path.write_text(json.dumps([doc]))
        return f"{path.name}: wrapped in a list"
    return f"{path.name}: unchanged"


def _corrupt_npz(rng, path: Path) -> str:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    k = sorted(arrays)[int(rng.integers(len(arrays)))]
    kind = int(rng.integers(5))
    if kind == 0:
        del arrays[k]
        what = "dropped"
    elif kind == 1:
        arrays[k] = arrays[k].reshape(-1)[: max(arrays[k].size - 1, 0)]
        what = "shortened"
    elif kind == 2:
        arrays[k] = arrays[k].astype(np.float32 if arrays[k].dtype.kind in "iu" else np.int64)
        what = "dtype changed"
    elif kind == 3:
        arrays[k] = np.full_like(arrays[k], np.nan) if arrays[k].dtype.kind in "fc" else arrays[k] * 0 + 2 ** 40
        what = "extreme values"
    else:
        arrays[k] = arrays[k].T.copy() if arrays[k].ndim > 1 else arrays[k][None]
        what = "transposed"
    from s4dc.ir.serialize import write_npz
    write_npz(path, arrays)
    return f"params.npz[{k}]: {what}"


def net_case(rng: np.random.Generator, index: int, work: Path) -> tuple[str, list[str], callable]:
    base, opts = NET_BASES[index % len(NET_BASES)]
    src = _compiled(work, base, opts)
    folder = work / f"case{index}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(src, folder)
    files = sorted(p.name for p in folder.iterdir())
    what = []
    kind = int(rng.integers(6))
    f = folder / files[int(rng.integers(len(files)))]
    if kind == 0:
        f.unlink()
        what.append(f"deleted {f.name}")
    elif kind == 1:
        data = f.read_bytes()
        f.write_bytes(data[: int(rng.integers(len(data)))])
        what.append(f"truncated {f.name}")
    elif kind == 2 or (kind == 3 and f.suffix == ".json"):
        target = folder / ["manifest.json", "graph.json", "placement.json"][int(rng.integers(3))]
        what.append(_corrupt_json(rng, target) if target.exists() else "no such json")
    elif kind == 3:
        what.append(_corrupt_npz(rng, folder / "params.npz"))
    else:
        what.append("folder intact")
    x_kind = int(rng.integers(9))
    x_seed = int(rng.integers(1 << 30))
    do_report = rng.random() < 0.3
    what.append(f"input {x_kind}" + (", report" if do_report else ""))

    def run() -> None:
        import s4dc

        net = s4dc.load(folder)
        F = net.graph.input_layer.attrs["features"]
        T = int(net.graph.meta.get("time_steps") or 8)
        g = np.random.default_rng(x_seed)
        x = [lambda: g.standard_normal((2, T, F)), lambda: g.standard_normal((2, T)),
             lambda: g.standard_normal((2, T, F + 1)), lambda: g.standard_normal((2, 2 * T, F)),
             lambda: np.zeros((0, T, F)), lambda: np.full((1, T, F), np.nan),
             lambda: g.integers(0, 9, (2, T, F)), lambda: np.array([[["a"] * F] * T], dtype=object),
             lambda: 1e30 * g.standard_normal((1, T, F))][x_kind]()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net.run(np.asarray(x, np.float32) if x_kind in (0, 1, 2, 3, 4, 5, 8) else x)
        if do_report:
            from s4dc.cli import main
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = main(["report", str(folder)])
            if code == 3:
                raise RuntimeError("s4dc report: internal error")
    return base, what, run


def _compiled(work: Path, base: str, opts: dict) -> Path:
    out = work / ("net_" + Path(base).stem)
    if not out.exists():
        import s4dc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s4dc.compile(ROOT / base, jobs=1, **opts).save(out)
    return out

