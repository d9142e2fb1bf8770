#!/usr/bin/env python
"""Train a small n-S4D classifier on scikit-learn's 8x8 digits and export it to ONNX.

Run from the repository root:

    .venv/bin/python examples/digits/train.py

Data: ``sklearn.datasets.load_digits`` as 64-step sequences (one pixel per step,
row-major, value / 16), split with
``train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)``.

Model (the paper's n-S4D: S4D + ReLU, no normalization, no residuals, no GLU/GELU):

    Linear(1 -> H)
    LAYERS x [ S4D (D skip) -> ReLU -> Linear(H -> H) ]
    mean over time (or last step, see POOL)
    Linear(H -> 10)

S4D: S4D-Lin init (A = -1/2 + i*pi*n), ZOH discretisation, B = 1 folded into C,
N/2 complex modes per channel (N = real state size, as state-spaces' d_state).
Trainable: log_dt (clamped to [log DT_MIN, log DT_MAX] = [log 0.1, log 0.5]),
log_A_real (A_real = -exp(log_A_real) < 0, always stable; clamped so |A_real| >= 0.5),
A_imag, C (complex), D. With dt >= 0.1 and |A_real| >= 0.5 every mode decays by at
least exp(-0.1 * 0.5 * 63) ~ 0.04 inside the 64-step window, so the materialised
kernel is (nearly) the whole impulse response and the stable recurrence that Loihi
runs forever matches it.
During training the length-64 kernel is computed from the parameters in every
forward pass and applied with an FFT convolution.

Deployment copy: every S4D layer holds its kernel MATERIALISED for L = 64 (from the
trained parameters, in float64, cast to float32) as a constant buffer (H, 1, 64)
flipped in time, applied as ``F.conv1d(F.pad(u, (63, 0)), w, groups=H) + D * u``.
That copy is exported with ``torch.onnx.export(..., dynamo=True)`` (opset 18).

Outputs (all in this folder): model.onnx, params.npz, metrics.json,
calibration.npz, test.npz.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------- configuration
SEED = 0
L = 64            # sequence length (8x8 pixels)
H = 64            # model width (channels)
N = 32            # real state size per channel (N/2 = 16 complex modes)
LAYERS = 3
N_CLASSES = 10
POOL = "mean"     # "mean" over time or "last" step
DT_MIN, DT_MAX = 0.1, 0.5            # clamp range of dt
DT_INIT_MIN, DT_INIT_MAX = 0.1, 0.5  # log-uniform init range of dt
A_RE_MIN_ABS = 0.5                  # |A_real| >= 0.5 (clamp); together: |exp(dt A)|^63 <= exp(-3.15) ~ 0.04
EPOCHS = 120
BATCH = 64
LR = 4e-3         # encoder / mixing / decoder / D
LR_SSM = 1e-3     # log_dt, log_A_real, A_imag, C (no weight decay, as in S4D)
WEIGHT_DECAY = 0.01
DROPOUT = 0.1     # dropout after each ReLU, training only (absent from the export)
THREADS = 2
N_CALIB = 256


# ---------------------------------------------------------------- S4D
def s4d_kernel_torch(log_dt, A_real, A_imag, C, L):
    """K[h, l] = 2 Re sum_n C_n (exp(dt A_n) - 1) / A_n * exp(dt A_n l), shape (H, L)."""
    dt = torch.exp(log_dt)[:, None]                       # (H, 1)
    A = torch.complex(A_real, A_imag)                     # (H, n2)
    dtA = dt * A
    Cb = C * (torch.exp(dtA) - 1.0) / A                   # ZOH, B = 1
    ar = torch.arange(L, dtype=dtA.real.dtype, device=dtA.device)
    vand = torch.exp(dtA[:, :, None] * ar)                # (H, n2, L)
    return 2.0 * torch.einsum("hn,hnl->hl", Cb, vand).real


def s4d_kernel_np(p: dict, L: int) -> np.ndarray:
    """Same kernel in complex float64 numpy from the exported parameters, (H, L)."""
    dt = np.exp(p["log_dt"])[:, None]
    A = p["A_re"] + 1j * p["A_im"]
    C = p["C_re"] + 1j * p["C_im"]
    dtA = dt * A
    Cb = C * (np.exp(dtA) - 1.0) / A
    vand = np.exp(dtA[:, :, None] * np.arange(L)[None, None, :])
    return 2.0 * np.einsum("hn,hnl->hl", Cb, vand).real


class S4D(nn.Module):
    """Trainable S4D (training form): y = causal_conv(u, K(params)) + D u, u: (B, H, L)."""

    def __init__(self, H: int, N: int):
        super().__init__()
        n2 = N // 2
        log_dt = torch.rand(H) * (math.log(DT_INIT_MAX) - math.log(DT_INIT_MIN)) + math.log(DT_INIT_MIN)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(H, n2)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n2, dtype=torch.float32).repeat(H, 1))
        C = torch.randn(H, n2, dtype=torch.cfloat)       # var 1/2 per real/imag part (stock S4D)
        self.C = nn.Parameter(torch.view_as_real(C))     # (H, n2, 2) real storage
        self.D = nn.Parameter(torch.randn(H))

    def clamped_log_dt(self):
        return self.log_dt.clamp(math.log(DT_MIN), math.log(DT_MAX))

    def A_real(self):
        """A_real = -exp(log_A_real) < 0 (optionally with |A_real| >= A_RE_MIN_ABS)."""
        la = self.log_A_real
        if A_RE_MIN_ABS > 0:
            la = la.clamp(min=math.log(A_RE_MIN_ABS))
        return -torch.exp(la)

    def kernel(self, L: int):
        return s4d_kernel_torch(self.clamped_log_dt(), self.A_real(), self.A_imag,
                                torch.view_as_complex(self.C), L)

    def forward(self, u):  # (B, H, L)
        Lu = u.shape[-1]
        k = self.kernel(Lu)
        n = 2 * Lu
        y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k, n=n), n=n)[..., :Lu]
        return y + u * self.D[:, None]

    def export_params(self) -> dict:
        with torch.no_grad():
            C = torch.view_as_complex(self.C).to(torch.complex128)
            return dict(
                log_dt=self.clamped_log_dt().double().numpy(),
                A_re=self.A_real().double().numpy(),
                A_im=self.A_imag.double().numpy(),
                C_re=C.real.numpy().copy(),
                C_im=C.imag.numpy().copy(),
                D=self.D.double().numpy(),
            )


class S4DConv(nn.Module):
    """Deployment form: kernel materialised for L as a time-flipped (H, 1, L) buffer."""

    def __init__(self, K: np.ndarray, D: np.ndarray):
        super().__init__()
        self.H, self.L = K.shape
        w = np.ascontiguousarray(K[:, ::-1]).astype(np.float32)[:, None, :]
        self.register_buffer("kernel", torch.from_numpy(w))
        self.D = nn.Parameter(torch.tensor(D, dtype=torch.float32))

    def forward(self, u):  # (B, H, L)
        y = F.conv1d(F.pad(u, (self.L - 1, 0)), self.kernel, groups=self.H)
        return y + u * self.D.unsqueeze(-1)


class NS4D(nn.Module):
    """Linear enc -> LAYERS x [S4D -> ReLU -> Linear(H,H)] -> pool -> Linear dec."""

    def __init__(self, s4d_layers: list[nn.Module], H: int, pool: str, dropout: float = 0.0):
        super().__init__()
        self.encoder = nn.Linear(1, H)
        self.s4d = nn.ModuleList(s4d_layers)
        self.mix = nn.ModuleList([nn.Linear(H, H) for _ in s4d_layers])
        self.decoder = nn.Linear(H, N_CLASSES)
        self.pool = pool
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):  # (B, L, 1)
        z = self.encoder(x)                        # (B, L, H)
        for s4d, mix in zip(self.s4d, self.mix):
            v = s4d(z.transpose(1, 2))             # (B, H, L)
            v = self.dropout(F.relu(v))
            z = mix(v.transpose(1, 2))             # (B, L, H)
        z = z.mean(dim=1) if self.pool == "mean" else z[:, -1, :]
        return self.decoder(z)


# ---------------------------------------------------------------- helpers
def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)[:, :, None]   # (n, 64, 1), row-major pixels
    y = y.astype(np.int64)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def accuracy(model, X, y, bs=512):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(X[i:i + bs])).argmax(-1) for i in range(0, len(X), bs)])
    return float((pred.numpy() == y).mean())


def deploy_copy(model: NS4D) -> tuple[NS4D, list[dict], list[np.ndarray]]:
    params = [s.export_params() for s in model.s4d]
    kernels = [s4d_kernel_np(p, L) for p in params]
    dep = NS4D([S4DConv(K, p["D"]) for K, p in zip(kernels, params)], H, model.pool)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("s4d.")}
    missing, unexpected = dep.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith("s4d.") for k in missing), (missing, unexpected)
    dep.eval()
    return dep, params, kernels


def export_onnx(dep: NS4D, path: Path, x_example: torch.Tensor):
    batch = torch.export.Dim("batch", min=1, max=4096)
    prog = torch.onnx.export(dep, (x_example,), dynamo=True, opset_version=18,
                             input_names=["x"], output_names=["logits"],
                             dynamic_shapes={"x": {0: batch}}, external_data=False,
                             verbose=False)
    prog.save(str(path), external_data=False)


# ---------------------------------------------------------------- main
def main():
    warnings.filterwarnings("ignore")
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)

    Xtr, Xte, ytr, yte = load_data()
    print(f"train {Xtr.shape}  test {Xte.shape}")

    model = NS4D([S4D(H, N) for _ in range(LAYERS)], H, POOL, DROPOUT)
    n_params = sum(p.numel() for p in model.parameters())
    ssm = [p for n, p in model.named_parameters()
           if n.startswith("s4d.") and not n.endswith(".D")]
    ssm_ids = {id(p) for p in ssm}
    rest = [p for p in model.parameters() if id(p) not in ssm_ids]
    opt = torch.optim.AdamW([
        dict(params=ssm, lr=LR_SSM, weight_decay=0.0),
        dict(params=rest, lr=LR, weight_decay=WEIGHT_DECAY),
    ])
    steps_per_epoch = math.ceil(len(Xtr) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[LR_SSM, LR], total_steps=EPOCHS * steps_per_epoch, pct_start=0.1)

    Xtr_t, ytr_t = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    g = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for ep in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(Xtr), generator=g)
        tot = 0.0
        for i in range(0, len(Xtr), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(Xtr_t[idx]), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
        if ep % 10 == 9 or ep == EPOCHS - 1:
            print(f"epoch {ep + 1:3d}  loss {tot / len(Xtr):.4f}  test acc {accuracy(model, Xte, yte):.4f}"
                  f"  ({time.time() - t0:.0f} s)")
    train_s = time.time() - t0

    acc_tr, acc_te = accuracy(model, Xtr, ytr), accuracy(model, Xte, yte)
    print(f"torch (training form):   train {acc_tr:.4f}  test {acc_te:.4f}  in {train_s:.1f} s")

    # ------------------------------------------------ deployment copy + ONNX
    dep, params, kernels = deploy_copy(model)
    dep_tr, dep_te = accuracy(dep, Xtr, ytr), accuracy(dep, Xte, yte)
    with torch.no_grad():
        xt = torch.from_numpy(Xte)
        d_form = (model.eval()(xt) - dep(xt)).abs().max().item()
    print(f"torch (conv form):       train {dep_tr:.4f}  test {dep_te:.4f}  "
          f"max |logit diff| vs training form {d_form:.2e}")

    onnx_path = HERE / "model.onnx"
    export_onnx(dep, onnx_path, torch.from_numpy(Xte[:4]))

    import onnx
    import onnxruntime as ort

    m = onnx.load(str(onnx_path))
    onnx.checker.check_model(m, full_check=True)
    ops = Counter(n.op_type for n in m.graph.node)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    assert in_name == "x", in_name

    def ort_logits(X):
        return np.concatenate([sess.run(None, {"x": X[i:i + 256]})[0] for i in range(0, len(X), 256)])

    lo_te, lo_tr = ort_logits(Xte), ort_logits(Xtr)
    with torch.no_grad():
        ref_te = dep(torch.from_numpy(Xte)).numpy()
    ort_err = float(np.abs(lo_te - ref_te).max() / np.abs(ref_te).max())
    ort_tr = float((lo_tr.argmax(-1) == ytr).mean())
    ort_te = float((lo_te.argmax(-1) == yte).mean())
    for b in (1, 7):  # dynamic batch
        assert sess.run(None, {"x": Xte[:b]})[0].shape == (b, N_CLASSES)
    print(f"onnxruntime:             train {ort_tr:.4f}  test {ort_te:.4f}  "
          f"rel max err vs torch {ort_err:.1e}")
    print(f"ONNX ops: {dict(sorted(ops.items()))}  size {onnx_path.stat().st_size / 1024:.1f} KB")
    assert ort_err < 1e-4, ort_err
    assert ort_te == dep_te, (ort_te, dep_te)

    # ------------------------------------------------ params, data, metrics
    dts = np.concatenate([np.exp(p["log_dt"]) for p in params])
    # stability / decay diagnostics: |exp(dt A)| < 1 always; tail of each kernel at l = L-1
    lam_max = max(float(np.abs(np.exp(np.exp(p["log_dt"])[:, None] * (p["A_re"] + 1j * p["A_im"]))).max())
                  for p in params)
    tail = np.concatenate([np.abs(K[:, -1]) / (np.abs(K).max(1) + 1e-12) for K in kernels])

    pz = {"n_layers": np.array(LAYERS), "L": np.array(L), "N": np.array(N), "H": np.array(H)}
    for i, (p, K) in enumerate(zip(params, kernels)):
        for k, v in p.items():
            pz[f"layer{i}_{k}"] = np.asarray(v, dtype=np.float64)
        pz[f"layer{i}_K"] = K  # true kernel (H, L) float64, NOT flipped
    np.savez(HERE / "params.npz", **pz)

    rng = np.random.default_rng(SEED)
    ci = np.sort(rng.choice(len(Xtr), size=N_CALIB, replace=False))
    np.savez(HERE / "calibration.npz", x=Xtr[ci].astype(np.float32), y=ytr[ci].astype(np.int64))
    np.savez(HERE / "test.npz", x=Xte.astype(np.float32), y=yte.astype(np.int64))

    metrics = dict(
        torch_train_acc=acc_tr, torch_test_acc=acc_te,
        torch_convform_train_acc=dep_tr, torch_convform_test_acc=dep_te,
        ort_train_acc=ort_tr, ort_test_acc=ort_te,
        ort_max_rel_err=ort_err, convform_max_abs_logit_diff=d_form,
        epochs=EPOCHS, batch_size=BATCH, lr=LR, lr_ssm=LR_SSM, weight_decay=WEIGHT_DECAY,
        dropout=DROPOUT, optimizer="AdamW + OneCycleLR",
        param_count=n_params, train_seconds=round(train_s, 1), threads=THREADS,
        H=H, layers=LAYERS, N=N, complex_modes=N // 2, L=L, pool=POOL,
        dt_clamp=[DT_MIN, DT_MAX], dt_init=[DT_INIT_MIN, DT_INIT_MAX],
        dt_range=[float(dts.min()), float(dts.max())],
        max_abs_eigenvalue=lam_max,
        kernel_tail_ratio_max=float(tail.max()), kernel_tail_ratio_median=float(np.median(tail)),
        n_train=int(len(Xtr)), n_test=int(len(Xte)), seed=SEED,
        onnx_opset=18, onnx_ops=dict(sorted(ops.items())),
        onnx_bytes=onnx_path.stat().st_size,
        torch_version=torch.__version__, onnx_version=onnx.__version__, onnxruntime_version=ort.__version__,
        numpy_version=np.__version__,
    )
    (HERE / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: metrics[k] for k in ("dt_range", "max_abs_eigenvalue",
                                              "kernel_tail_ratio_max", "kernel_tail_ratio_median")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
