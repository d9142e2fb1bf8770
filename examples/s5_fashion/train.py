#!/usr/bin/env python
"""An S5-style (MIMO diagonal) model on Fashion-MNIST as 784-step sequences
(the data of examples/fashion: one pixel per step, value / 255), exported in
s4dc's canonical MIMO form (`s4dc.MIMO` nodes, written by CanonicalModel.mimo)
and compiled to Loihi 2 integers.

    .venv/bin/python examples/s5_fashion/train.py [--epochs 2] [--bench 5]

Model (n-S4D style, as the Loihi 2 mapping wants: ReLU, no normalization, no
residual adds): encoder Linear(1, H) -> 4 x [S5 layer (P shared complex
modes, ZOH with one dt per mode, complex B (P, H), C (H, P), real D (H, H))
-> ReLU] -> mean over time -> Linear(H, 10). H = 48, P = 48: about 47k
parameters (examples/fashion's S4D has 50.7k). Training runs the layers in
convolution form (each mode's impulse response lam^l, by FFT), which is the
recurrence exactly. Writes model.onnx, calibration.npz and metrics.json here.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fashion"))
from data import load_fashion  # noqa: E402

H, P, LAYERS, L = 48, 48, 4, 784
BATCH, LR, LR_SSM, WD = 64, 4e-3, 1e-3, 0.01


class S5(nn.Module):
    """x_t = lam_bar x_{t-1} + B_bar u_t, y_t = 2 Re(C x_t) + D u_t (S5 with conj_sym)."""

    def __init__(self, h: int, p: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.log_neg_re = nn.Parameter(torch.full((p,), math.log(0.5)))
        self.im = nn.Parameter(math.pi * torch.arange(p, dtype=torch.float32) / 2)
        self.log_dt = nn.Parameter(torch.empty(p).uniform_(math.log(1e-3), math.log(1e-1), generator=g))
        self.B = nn.Parameter(torch.randn(p, h, 2, generator=g) / math.sqrt(2 * h))
        self.C = nn.Parameter(torch.randn(h, p, 2, generator=g) / math.sqrt(2 * p))
        self.D = nn.Parameter(torch.randn(h, h, generator=g) / math.sqrt(h) * 0.1)

    def discrete(self):
        lam = torch.complex(-torch.exp(self.log_neg_re), self.im)
        dt = torch.exp(self.log_dt)
        lam_bar = torch.exp(lam * dt)
        B = torch.view_as_complex(self.B)
        return lam, dt, lam_bar, ((lam_bar - 1) / lam)[:, None] * B

    def forward(self, u):  # (batch, L, H)
        _, _, lam_bar, Bb = self.discrete()
        T = u.shape[1]
        bu = u.to(torch.complex64) @ Bb.T                                   # (batch, T, P)
        k = lam_bar[None, :] ** torch.arange(T, dtype=torch.float32)[:, None]  # (T, P)
        n = 1 << (2 * T - 1).bit_length()  # a power of two >= 2T: no wrap-around, fast FFT
        x = torch.fft.ifft(torch.fft.fft(bu, n=n, dim=1) * torch.fft.fft(k, n=n, dim=0)[None], dim=1)[:, :T]
        return 2 * (x @ torch.view_as_complex(self.C).T).real + u @ self.D.T


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(1, H)
        self.layers = nn.ModuleList([S5(H, P, 10 + i) for i in range(LAYERS)])
        self.dec = nn.Linear(H, 10)

    def forward(self, x):
        h = self.enc(x)
        for layer in self.layers:
            h = torch.relu(layer(h))
        return self.dec(h.mean(dim=1))


def export(model: Net, path: Path) -> None:
    from s4dc.frontend.canonical import CanonicalModel

    m = CanonicalModel(features=1, time=L)
    m.linear(model.enc.weight.detach().numpy().astype(np.float64), model.enc.bias.detach().numpy())
    for layer in model.layers:
        lam, dt, _, _ = layer.discrete()
        m.mimo(lam.detach().numpy(), torch.view_as_complex(layer.B).detach().numpy(),
               torch.view_as_complex(layer.C).detach().numpy(), layer.D.detach().numpy(),
               dt=dt.detach().numpy()).relu()
    m.readout("mean").linear(model.dec.weight.detach().numpy(), model.dec.bias.detach().numpy())
    onnx.save(m.to_onnx(), path)


def accuracy(model: Net, X: np.ndarray, y: np.ndarray, bs: int = 500) -> float:
    model.eval()
    with torch.no_grad():
        pred = np.concatenate([model(torch.from_numpy(X[i:i + bs])).argmax(1).numpy() for i in range(0, len(X), bs)])
    model.train()
    return float(np.mean(pred == y))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=1.0, help="epochs (fractions allowed)")
    ap.add_argument("--bench", type=int, default=0, help="time this many batches and exit")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    Xtr, ytr = load_fashion("train")
    Xte, yte = load_fashion("test")
    model = Net()
    n_params = sum(p.numel() for p in model.parameters())
    ssm = [p for n, p in model.named_parameters() if any(k in n for k in ("log_neg_re", "im", "log_dt"))]
    rest = [p for n, p in model.named_parameters() if not any(k in n for k in ("log_neg_re", "im", "log_dt"))]
    opt = torch.optim.AdamW([dict(params=ssm, lr=LR_SSM, weight_decay=0.0), dict(params=rest, lr=LR, weight_decay=WD)])
    steps = int(a.bench or math.ceil(a.epochs * len(Xtr) / BATCH))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[LR_SSM, LR], total_steps=max(steps, 2))
    rng = np.random.default_rng(0)
    order = np.concatenate([rng.permutation(len(Xtr)) for _ in range(math.ceil(a.epochs) + 1)])
    t0 = time.time()
    for s in range(steps):
        idx = order[s * BATCH:(s + 1) * BATCH]
        loss = nn.functional.cross_entropy(model(torch.from_numpy(Xtr[idx])), torch.from_numpy(ytr[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if s % 100 == 0 or s == steps - 1:
            print(f"step {s}/{steps} loss {loss.item():.3f} {time.time() - t0:.0f} s", flush=True)
    if a.bench:
        print(f"{(time.time() - t0) / a.bench:.3f} s per batch of {BATCH}")
        return
    train_s = time.time() - t0
    torch_test = accuracy(model, Xte, yte)
    export(model, HERE / "model.onnx")
    cal = Xtr[np.random.default_rng(1).choice(len(Xtr), 64, replace=False)]
    np.savez(HERE / "calibration.npz", x=cal)
    metrics = {"torch_test_acc": torch_test, "param_count": n_params, "H": H, "P": P, "layers": LAYERS,
               "epochs": a.epochs, "batch_size": BATCH, "lr": LR, "lr_ssm": LR_SSM, "train_seconds": round(train_s)}
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
