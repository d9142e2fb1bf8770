#!/usr/bin/env python
"""Accuracy of the S5-style model on the full Fashion-MNIST test set:
onnxruntime (float) against the compiled network (bit-exact Loihi 2
integers, PTQ at the default widths). Adds the figures to metrics.json.

    .venv/bin/python examples/s5_fashion/evaluate.py [--limit N]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import s4dc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fashion"))
from data import load_fashion  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="first N test samples only (0: all 10k)")
    a = ap.parse_args()
    x, y = load_fashion("test")
    if a.limit:
        x, y = x[:a.limit], y[:a.limit]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(HERE / "model.onnx"), so, providers=["CPUExecutionProvider"])
    t0 = time.time()
    ref = np.concatenate([sess.run(None, {"x": x[i:i + 500]})[0] for i in range(0, len(x), 500)])
    t_ort = time.time() - t0
    net = s4dc.compile(HERE / "model.onnx", calibration=str(HERE / "calibration.npz"), place=False)
    t0 = time.time()
    out = net.run(x, workers=2)
    t_sim = time.time() - t0
    acc_f, acc_q = float(np.mean(ref.argmax(1) == y)), float(np.mean(out.argmax(1) == y))
    res = {"ort_test_acc": acc_f, "compiled_test_acc": acc_q, "drop_points": round(100 * (acc_f - acc_q), 2),
           "test_samples": int(len(x)), "pred_disagreements": int(np.sum(ref.argmax(1) != out.argmax(1))),
           "logit_rel_rms": float(np.sqrt(np.mean((out - ref) ** 2)) / np.sqrt(np.mean(ref ** 2))),
           "saturations": int(sum(net.saturations.values())), "ort_seconds": round(t_ort), "sim_seconds": round(t_sim)}
    print(json.dumps(res))
    path = HERE / "metrics.json"
    m = json.loads(path.read_text()) if path.exists() else {}
    m.update(res)
    path.write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
