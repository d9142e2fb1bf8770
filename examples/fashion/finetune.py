#!/usr/bin/env python
"""Quantization-aware fine-tuning of the Fashion-MNIST model at 4-bit weights.

    .venv/bin/python examples/fashion/finetune.py              # the shipped run
    .venv/bin/python examples/fashion/finetune.py --steps 20   # a quick look

1. Compile `model.onnx` for Loihi 2 with 4-bit synapse weights (post-training
   quantization, calibrated on `calibration.npz`) and measure its accuracy
   in the bit-exact simulator on the full test set.
2. Fine-tune it with `s4dc.torch.qat.QATNetwork`: every forward pass is the
   compiled network's exact integer output; gradients come from the float
   surrogate (straight-through); weights start at the float values the compile
   rounded. Adam with a cosine-decayed learning rate in grid steps (LSBs),
   random train batches (seeded), optionally a distillation term towards the
   float network.
3. Export the fine-tuned integers (`model_w4_qat.onnx`), compile that, check
   that the compiled network's output equals the fine-tuned module's
   exactly, and measure its accuracy on the full test set.

Writes `finetune_metrics.json` here. Needs torch (`make` installs it).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import s4dc
from s4dc.targets.float_exec import FloatExecutor
from s4dc.torch.qat import QATNetwork

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from data import load_fashion  # noqa: E402


def accuracy(net: s4dc.Network, x: np.ndarray, y: np.ndarray) -> float:
    pred = np.concatenate([net.run(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return float(np.mean(pred == y))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=4, help="synapse weight bits")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.01, help="Adam learning rate in grid steps (LSBs)")
    ap.add_argument("--distill", type=float, default=0.0,
                    help="weight of a KL term towards the float network's outputs (0: labels only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test", type=int, default=10000, help="test samples to evaluate on")
    ap.add_argument("--out", default=str(HERE / "finetune_metrics.json"))
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    xtr, ytr = load_fashion("train")
    xte, yte = load_fashion("test")
    xte, yte = xte[:a.test], yte[:a.test]
    calib = np.load(HERE / "calibration.npz")["x"]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "precision.json"
        cfg.write_text(json.dumps({"Model": {"weight": a.bits}}))
        t0 = time.perf_counter()
        net = s4dc.compile(HERE / "model.onnx", calibration=calib, config=str(cfg), place=False)
        acc_before = accuracy(net, xte, yte)
        print(f"post-training quantization, w{a.bits}: {acc_before:.4f} on {len(xte)} test samples "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

        qat = QATNetwork(net)
        teacher = FloatExecutor(net.float_graph) if a.distill else None
        opt = torch.optim.Adam(qat.parameters(), lr=a.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / a.steps)))
        rng = np.random.default_rng(a.seed)
        t1, losses = time.perf_counter(), []
        for step in range(a.steps):
            idx = rng.choice(len(xtr), a.batch, replace=False)
            out = qat(torch.from_numpy(xtr[idx]))
            loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(ytr[idx]).long())
            if teacher is not None:
                soft = torch.log_softmax(torch.from_numpy(np.asarray(teacher.run(xtr[idx]), np.float32)), 1)
                loss = loss + a.distill * torch.nn.functional.kl_div(torch.log_softmax(out, 1), soft,
                                                                     log_target=True, reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if (step + 1) % 25 == 0 or step + 1 == a.steps:
                print(f"  step {step + 1}/{a.steps}: loss {np.mean(losses[-25:]):.4f} "
                      f"({time.perf_counter() - t1:.0f} s)", flush=True)
        train_s = time.perf_counter() - t1

        tuned = HERE / f"model_w{a.bits}_qat.onnx"
        qat.export(tuned)
        net2 = s4dc.compile(tuned, calibration=calib, config=str(cfg), place=False)
        with torch.no_grad():
            mine = qat(torch.from_numpy(xte[:256])).numpy()
        exact = bool(np.array_equal(mine, net2.run(xte[:256])))
        acc_after = accuracy(net2, xte, yte)
    print(f"fine-tuned, compiled again: {acc_after:.4f}; torch output == compiled output: {exact}")
    doc = {"weight_bits": a.bits, "test_samples": len(xte), "accuracy_ptq": acc_before,
           "accuracy_qat": acc_after, "compiled_equals_torch_exactly": exact, "steps": a.steps,
           "batch": a.batch, "lr_lsb": a.lr, "distill": a.distill, "schedule": "cosine", "optimizer": "Adam", "seed": a.seed,
           "train_seconds": round(train_s, 1), "loss_first_25": float(np.mean(losses[:25])),
           "loss_last_25": float(np.mean(losses[-25:])), "onnx": tuned.name}
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    if not exact:
        sys.exit("the compiled network does not reproduce the fine-tuned integers")


if __name__ == "__main__":
    main()
