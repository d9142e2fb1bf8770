"""Accuracy benchmark (`make bench-accuracy`): for each example, accuracy of
the ONNX model in onnxruntime and of the compiled network in the bit-exact
simulator (post-training quantization only), and the bit-width ablation the
paper's reviewers asked for. Examples: digits, fashion (S4D) and s5_fashion
(S5-style MIMO, on fashion's data). Writes docs/accuracy.md.

    .venv/bin/python benchmarks/accuracy.py [--ablation-samples N] [--workers 2]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import s4dc

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# Examples that read another example's data (s5_fashion: the same Fashion-MNIST sequences as fashion).
DATA_OF = {"s5_fashion": "fashion"}
# (label, precision config): the default, then weights and A coefficients varied.
CONFIGS = [
    ("w8 a16 (default)", {}),
    ("w6 a16", {"Model": {"weight": 6}}),
    ("w4 a16", {"Model": {"weight": 4}}),
    ("w8 a12", {"Model": {"a": 12}}),
    ("w8 a8", {"Model": {"a": 8}}),
]


def load_test(name: str) -> tuple[np.ndarray, np.ndarray]:
    data = DATA_OF.get(name, name)
    folder = EXAMPLES / data
    if (folder / "test.npz").exists():
        d = np.load(folder / "test.npz")
        return d["x"], d["y"]
    spec = importlib.util.spec_from_file_location(f"{data}_data", folder / "data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, f"load_{data}")("test")


def ort_accuracy(model: Path, x: np.ndarray, y: np.ndarray) -> float:
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    pred = np.concatenate([sess.run(None, {name: x[i:i + 500]})[0].argmax(1) for i in range(0, len(x), 500)])
    return float(np.mean(pred == y))


def _config_file(cfg: dict) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
    return f.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ablation-samples", type=int, default=2000,
                    help="test samples per ablation row (the default row always uses the full set)")
    ap.add_argument("--workers", type=int, default=1,
                    help="simulator processes (the numba kernel already uses every core)")
    ap.add_argument("--examples", nargs="*", default=["digits", "fashion", "s5_fashion"])
    ap.add_argument("--out", default=str(ROOT / "docs" / "accuracy.md"))
    a = ap.parse_args()
    start = time.perf_counter()
    rows, results, qat_rows = [], {}, []
    for name in a.examples:
        model = EXAMPLES / name / "model.onnx"
        if not model.exists():
            print(f"{name}: no model.onnx, skipped")
            continue
        x, y = load_test(name)
        acc_ort = ort_accuracy(model, x, y)
        print(f"{name}: {len(y)} test sequences of {x.shape[1]} steps; onnxruntime accuracy {acc_ort:.4f}", flush=True)
        res = {"onnxruntime": acc_ort, "test_samples": int(len(y)), "configs": {}}
        for label, cfg in CONFIGS:
            n = len(y) if not cfg else min(len(y), a.ablation_samples)
            t0 = time.perf_counter()
            # place=False: partitioning and placement do not change the integers the network computes
            net = s4dc.compile(model, calibration=str(EXAMPLES / name / "calibration.npz"), config=_config_file(cfg),
                               place=False)
            t1 = time.perf_counter()
            out = net.run(x[:n], workers=a.workers)
            t2 = time.perf_counter()
            acc = float(np.mean(out.argmax(1) == y[:n]))
            ref = acc_ort if n == len(y) else ort_accuracy(model, x[:n], y[:n])
            sat = sum(net.saturations.values())
            res["configs"][label] = {"accuracy": acc, "onnxruntime_same_samples": ref, "samples": n,
                                     "saturations": sat, "compile_s": round(t1 - t0, 2), "run_s": round(t2 - t1, 2)}
            print(f"  {label:<18} {acc:.4f} on {n} (onnxruntime {ref:.4f}, drop {100 * (ref - acc):+.2f} pt), "
                  f"saturations {sat}, compile {t1 - t0:.1f} s, simulate {t2 - t1:.1f} s", flush=True)
            rows.append((name, label, n, ref, acc, sat))
        results[name] = res
        tuned = EXAMPLES / name / "model_w4_qat.onnx"
        if tuned.exists():  # quantization-aware fine-tuning (examples/fashion/finetune.py): both on the full set
            res["qat_w4"] = {}
            for label, m in (("w4 a16, post-training quantization", model),
                             ("w4 a16, fine-tuned (model_w4_qat.onnx)", tuned)):
                net = s4dc.compile(m, calibration=str(EXAMPLES / name / "calibration.npz"),
                                   config=_config_file({"Model": {"weight": 4}}), place=False)
                acc = float(np.mean(net.run(x, workers=a.workers).argmax(1) == y))
                sat = sum(net.saturations.values())
                res["qat_w4"][label] = {"accuracy": acc, "samples": int(len(y)), "saturations": sat}
                print(f"  {label:<40} {acc:.4f} on {len(y)} (onnxruntime float {acc_ort:.4f})", flush=True)
                qat_rows.append((name, label, len(y), acc_ort, acc, sat))
    lines = ["# Accuracy: onnxruntime (float) vs the compiled bit-exact network", "",
             "Generated by `make bench-accuracy` (benchmarks/accuracy.py). Post-training quantization only,",
             "calibrated on each example's `calibration.npz` (training split). `wN aM`: N-bit synapse weights,",
             "M-bit eigenvalue coefficients; an S4D layer's B and C 16 bits (a MIMO layer's B and C are synapse",
             "weights, N bits), state and messages 24 bits. The default row uses the full test set; ablation rows",
             "may use the first samples (column `samples`), compared with onnxruntime on the same samples.",
             "s5_fashion is the S5-style (MIMO) model on fashion's test set.", "",
             "| example | bits | samples | onnxruntime | s4dc (bit-exact) | drop (points) | saturations |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, label, n, ref, acc, sat in rows:
        lines.append(f"| {name} | {label} | {n} | {100 * ref:.2f} | {100 * acc:.2f} | {100 * (ref - acc):+.2f} | {sat} |")
    if qat_rows:
        lines += ["", "## Quantization-aware fine-tuning at 4-bit weights", "",
                  "`examples/fashion/finetune.py` (`make finetune`) fine-tunes the compiled 4-bit network with",
                  "`s4dc.torch.qat.QATNetwork` (its forward pass is the compiled integers) and exports",
                  "`model_w4_qat.onnx`; both rows compile with `{\"Model\": {\"weight\": 4}}` and run on the full",
                  "test set; the drop is against the float model in onnxruntime. Settings and the exactness check:",
                  "`examples/fashion/finetune_metrics.json`.", "",
                  "| example | network | samples | onnxruntime (float) | s4dc (bit-exact) | drop (points) | saturations |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, label, n, ref, acc, sat in qat_rows:
            lines.append(f"| {name} | {label} | {n} | {100 * ref:.2f} | {100 * acc:.2f} | {100 * (ref - acc):+.2f} | {sat} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    (Path(a.out).with_suffix(".json")).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {a.out} ({time.perf_counter() - start:.0f} s in all)")


if __name__ == "__main__":
    main()
