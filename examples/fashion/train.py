#!/usr/bin/env python
"""Train an n-S4D classifier on Fashion-MNIST (784-step sequences) and export it to ONNX.

Run from the repository root:

    .venv/bin/python examples/fashion/train.py            # train (resumes), export, check
    .venv/bin/python examples/fashion/train.py --bench 5  # time 5 batches and stop

Data: ``data.load_fashion`` (Debian's dataset-fashion-mnist, gzipped IDX) as 784-step
sequences, one pixel per step in row-major order, value / 255. Train on the 60k train
split, evaluate on the 10k test split.

Model (the paper's n-S4D: S4D + ReLU, no normalization, no residuals, no GLU/GELU):

    Linear(1 -> H)
    LAYERS x [ S4D (D skip) -> ReLU -> Linear(H -> H) ]
    mean over time (or last step, see POOL)
    Linear(H -> 10)

S4D: S4D-Lin init (A = -1/2 + i*pi*n), ZOH discretisation, B = 1 folded into C,
N/2 complex modes per channel (N = real state size, as state-spaces' d_state).
Trainable: log_dt (clamped to [log DT_MIN, log DT_MAX]), log_A_real
(A_real = -exp(log_A_real) < 0, always stable; clamped so |A_real| >= A_RE_MIN_ABS),
A_imag, C (complex), D. With dt >= DT_MIN and |A_real| >= A_RE_MIN_ABS every mode decays
by at least exp(-DT_MIN * A_RE_MIN_ABS * 783) inside the 784-step window, so the
materialised kernel is (nearly) the whole impulse response and the stable recurrence
that Loihi runs forever matches it.
During training the length-784 kernel is computed from the parameters in every forward
pass and applied with an FFT convolution.

Deployment copy: every S4D layer holds its kernel MATERIALISED for L = 784 (from the
trained parameters, in float64, cast to float32) as a constant buffer (H, 1, 784)
flipped in time, applied as ``F.conv1d(F.pad(u, (783, 0)), w, groups=H) + D * u``.
That copy is exported with ``torch.onnx.export(..., dynamo=True)`` (opset 18).

Training saves ``checkpoint.pt`` here after every epoch and resumes from it; it is
deleted once the export and checks succeed.

Outputs (all in this folder): model.onnx, params.npz, metrics.json, calibration.npz.
"""

from __future__ import annotations

import argparse
import ctypes
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
sys.path.insert(0, str(HERE))


def _keep_freed_memory():
    """Stop glibc from returning the ~26 MB FFT buffers to the OS after every use.

    Without this every large tensor is a fresh mmap whose pages fault in on first
    touch (about a third of the step time here). Performance only; no effect on results.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: 32 MB (the glibc maximum)
        libc.mallopt(-1, 1 << 30)           # M_TRIM_THRESHOLD: keep up to 1 GB of free heap
        libc.mallopt(-2, 64 << 20)          # M_TOP_PAD
    except (OSError, AttributeError):
        pass


_keep_freed_memory()
from data import load_fashion  # noqa: E402

from s4dc.torch.layers import CausalFFTConv, fft_size  # noqa: E402  (the FFT convolution NS4D uses)

# ---------------------------------------------------------------- configuration
SEED = 0
L = 784           # sequence length (28x28 pixels)
H = 64            # model width (channels)
N = 64            # real state size per channel (N/2 = 32 complex modes)
LAYERS = 4
N_CLASSES = 10
POOL = "mean"     # "mean" over time or "last" step
DT_MIN, DT_MAX = 0.01, 0.1           # clamp range of dt
DT_INIT_MIN, DT_INIT_MAX = 0.01, 0.1  # log-uniform init range of dt
A_RE_MIN_ABS = 0.5                   # |A_real| >= 0.5: |exp(dt A)|^783 <= exp(-0.01*0.5*783) ~ 0.02
EPOCHS = 6       # ~5-7 min per epoch on 2 shared CPU cores: ~35-40 min of training
BATCH = 64
LR = 1e-2         # encoder / mixing / decoder / D
LR_SSM = 2e-3     # log_dt, log_A_real, A_imag, C (no weight decay, as in S4D)
WEIGHT_DECAY = 0.01
DROPOUT = 0.0     # dropout after each ReLU, training only (absent from the export)
THREADS = 2
N_CALIB = 256
N_EPOCH_EVAL = 2000   # per-epoch progress: accuracy on the first 2000 test samples (the final check uses all)
N_ORT_TRAIN = 5000    # onnxruntime train accuracy on a fixed random 5000-sample train subset (the full
                      # 60k through onnxruntime's 784-tap grouped Conv takes ~25 min on 2 cores)
OUTDIR = HERE


# ---------------------------------------------------------------- S4D
def s4d_kernel_torch(log_dt, A_real, A_imag, C, L):
    """K[h, l] = 2 Re sum_n C_n (exp(dt A_n) - 1) / A_n * exp(dt A_n l), shape (H, L).

    The (H, n2, L) Vandermonde part is computed in real arithmetic
    (exp(a l) cos(b l), exp(a l) sin(b l)), which is several times faster on CPU
    than a complex exp.
    """
    dt = torch.exp(log_dt)[:, None]                       # (H, 1)
    A = torch.complex(A_real, A_imag)                     # (H, n2)
    Cb = C * (torch.exp(dt * A) - 1.0) / A                # ZOH, B = 1
    ar = torch.arange(L, dtype=A_real.dtype, device=A_real.device)
    mag = torch.exp((dt * A_real)[:, :, None] * ar)       # (H, n2, L)
    ph = (dt * A_imag)[:, :, None] * ar
    return 2.0 * (torch.einsum("hn,hnl->hl", Cb.real, mag * torch.cos(ph))
                  - torch.einsum("hn,hnl->hl", Cb.imag, mag * torch.sin(ph)))


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
        """A_real = -exp(log_A_real) < 0 (with |A_real| >= A_RE_MIN_ABS)."""
        la = self.log_A_real
        if A_RE_MIN_ABS > 0:
            la = la.clamp(min=math.log(A_RE_MIN_ABS))
        return -torch.exp(la)

    def kernel(self, L: int):
        return s4d_kernel_torch(self.clamped_log_dt(), self.A_real(), self.A_imag,
                                torch.view_as_complex(self.C), L)

    def forward(self, u):  # (B, H, L)
        Lu = u.shape[-1]
        u = u.contiguous()  # (B, L, H).transpose arrives strided: FFT and products on it are ~10x slower
        y = CausalFFTConv.apply(u, self.kernel(Lu), fft_size(Lu))
        return y + u * self.D[:, None]

    def export_params(self) -> dict:
        with torch.no_grad():
            C = torch.view_as_complex(self.C).to(torch.complex128)
            return dict(
                log_dt=self.clamped_log_dt().double().cpu().numpy(),
                A_re=self.A_real().double().cpu().numpy(),
                A_im=self.A_imag.double().cpu().numpy(),
                C_re=C.real.cpu().numpy().copy(),
                C_im=C.imag.cpu().numpy().copy(),
                D=self.D.double().cpu().numpy(),
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
def accuracy(model, X, y, bs=500, device="cpu"):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(X[i:i + bs]).to(device)).argmax(-1).cpu()
                          for i in range(0, len(X), bs)])
    return float((pred.numpy() == y).mean())


def deploy_copy(model: NS4D) -> tuple[NS4D, list[dict], list[np.ndarray]]:
    params = [s.export_params() for s in model.s4d]
    kernels = [s4d_kernel_np(p, L) for p in params]
    dep = NS4D([S4DConv(K, p["D"]) for K, p in zip(kernels, params)], H, model.pool)
    sd = {k: v.cpu() for k, v in model.state_dict().items() if not k.startswith("s4d.")}
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


def config() -> dict:
    return dict(SEED=SEED, L=L, H=H, N=N, LAYERS=LAYERS, POOL=POOL, DT=[DT_MIN, DT_MAX],
                DT_INIT=[DT_INIT_MIN, DT_INIT_MAX], A_RE_MIN_ABS=A_RE_MIN_ABS, EPOCHS=EPOCHS,
                BATCH=BATCH, LR=LR, LR_SSM=LR_SSM, WEIGHT_DECAY=WEIGHT_DECAY, DROPOUT=DROPOUT)


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", type=int, default=0, help="time this many training batches and exit")
    ap.add_argument("--device", default="cpu", help="training device (the shipped model: cpu)")
    ap.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint.pt")
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="exploration only: override a configuration constant, e.g. --set EPOCHS=3")
    ap.add_argument("--smoke", action="store_true",
                    help="pipeline check: 1 epoch on 1280 train / 500 test samples, outputs to /tmp/fashion_smoke")
    ap.add_argument("--explore", metavar="JSON",
                    help="exploration only: train without checkpoints or exports, write the history here")
    args = ap.parse_args()
    for kv in args.set:
        name, val = kv.split("=", 1)
        if name not in config() and name not in ("DT_MIN", "DT_MAX", "DT_INIT_MIN", "DT_INIT_MAX"):
            raise SystemExit(f"unknown setting {name}")
        globals()[name] = json.loads(val) if val[:1] in "0123456789-[{.tfn" else val

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True)

    global OUTDIR, EPOCHS, N_ORT_TRAIN, N_EPOCH_EVAL
    Xtr, ytr = load_fashion("train")
    Xte, yte = load_fashion("test")
    if args.smoke:
        OUTDIR = Path("/tmp/fashion_smoke")
        OUTDIR.mkdir(exist_ok=True)
        EPOCHS, N_ORT_TRAIN, N_EPOCH_EVAL = 1, 300, 200
        Xtr, ytr, Xte, yte = Xtr[:1280], ytr[:1280], Xte[:500], yte[:500]
    ckpt = OUTDIR / "checkpoint.pt"
    print(f"train {Xtr.shape}  test {Xte.shape}  config {json.dumps(config())}", flush=True)

    model = NS4D([S4D(H, N) for _ in range(LAYERS)], H, POOL, DROPOUT).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params}", flush=True)
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

    Xtr_t, ytr_t = torch.from_numpy(Xtr).to(dev), torch.from_numpy(ytr).to(dev)
    g = torch.Generator().manual_seed(SEED)

    if args.bench:
        model.train()
        perm = torch.randperm(len(Xtr), generator=g)
        for i in range(args.bench + 1):
            if i == 1:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.time()
            idx = perm[i * BATCH:(i + 1) * BATCH].to(dev)
            loss = F.cross_entropy(model(Xtr_t[idx]), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt_b = (time.time() - t0) / args.bench
        print(f"{dt_b * 1000:.0f} ms/batch of {BATCH}  -> {dt_b * steps_per_epoch / 60:.1f} min/epoch", flush=True)
        return 0

    start_ep, train_s, history = 0, 0.0, []
    if ckpt.exists() and not args.no_resume and not args.explore:
        ck = torch.load(ckpt, map_location=dev, weights_only=False)
        if ck["config"] == config():
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            g.set_state(ck["gen"])
            torch.set_rng_state(ck["rng"])
            start_ep, train_s, history = ck["epoch"], ck["train_s"], ck["history"]
            print(f"resumed from {ckpt.name} after epoch {start_ep} ({train_s:.0f} s so far)", flush=True)
        else:
            print(f"{ckpt.name} has another config; starting afresh", flush=True)

    for ep in range(start_ep, EPOCHS):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(Xtr), generator=g)
        tot, nb = 0.0, 0
        for i in range(0, len(Xtr), BATCH):
            idx = perm[i:i + BATCH].to(dev)
            loss = F.cross_entropy(model(Xtr_t[idx]), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            nb += 1
            if nb % 100 == 0 and not args.explore:
                print(f"  epoch {ep + 1} batch {nb}/{steps_per_epoch}  loss {tot / min(i + BATCH, len(Xtr)):.4f}"
                      f"  ({time.time() - t0:.0f} s)", flush=True)
        train_s += time.time() - t0
        te = accuracy(model, Xte[:N_EPOCH_EVAL], yte[:N_EPOCH_EVAL], device=dev)
        history.append(dict(epoch=ep + 1, loss=tot / len(Xtr), test_acc_first2000=te, seconds=round(train_s, 1)))
        print(f"epoch {ep + 1:3d}  loss {tot / len(Xtr):.4f}  test[:{N_EPOCH_EVAL}] acc {te:.4f}"
              f"  ({train_s:.0f} s)", flush=True)
        if args.explore:
            Path(args.explore).write_text(json.dumps(dict(config=config(), params=n_params,
                                                          history=history), indent=1))
            continue
        torch.save(dict(config=config(), model=model.state_dict(), opt=opt.state_dict(),
                        sched=sched.state_dict(), gen=g.get_state(), rng=torch.get_rng_state(),
                        epoch=ep + 1, train_s=train_s, history=history), ckpt)

    if args.explore:
        return 0
    model = model.cpu().eval()
    t_eval = time.time()
    acc_tr, acc_te = accuracy(model, Xtr, ytr), accuracy(model, Xte, yte)
    print(f"torch (training form):   train {acc_tr:.4f}  test {acc_te:.4f}  in {train_s:.1f} s", flush=True)

    # ------------------------------------------------ deployment copy + ONNX
    # train-side checks of the conv form and onnxruntime use a fixed random train subset
    sub = np.sort(np.random.default_rng(SEED + 1).choice(len(Xtr), size=N_ORT_TRAIN, replace=False))
    Xsub, ysub = Xtr[sub], ytr[sub]
    acc_sub = accuracy(model, Xsub, ysub)
    dep, params, kernels = deploy_copy(model)
    with torch.no_grad():
        def logits(mdl, X):
            return torch.cat([mdl(torch.from_numpy(X[i:i + 500])) for i in range(0, len(X), 500)]).numpy()
        ref_te = logits(dep, Xte)
        ref_sub = logits(dep, Xsub)
        d_form = float(np.abs(logits(model, Xte) - ref_te).max())
    dep_te = float((ref_te.argmax(-1) == yte).mean())
    dep_sub = float((ref_sub.argmax(-1) == ysub).mean())
    print(f"torch (conv form):       train subset {dep_sub:.4f} (training form {acc_sub:.4f})  test {dep_te:.4f}  "
          f"max |logit diff| vs training form {d_form:.2e}", flush=True)

    onnx_path = OUTDIR / "model.onnx"
    export_onnx(dep, onnx_path, torch.from_numpy(Xte[:4]))

    import onnx
    import onnxruntime as ort

    m = onnx.load(str(onnx_path))
    onnx.checker.check_model(m, full_check=True)
    ops = Counter(n.op_type for n in m.graph.node)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    assert in_name == "x", in_name

    def ort_logits(X):
        return np.concatenate([sess.run(None, {"x": X[i:i + 250]})[0] for i in range(0, len(X), 250)])

    lo_te, lo_sub = ort_logits(Xte), ort_logits(Xsub)
    ort_err = float(max(np.abs(lo_te - ref_te).max() / np.abs(ref_te).max(),
                        np.abs(lo_sub - ref_sub).max() / np.abs(ref_sub).max()))
    ort_sub = float((lo_sub.argmax(-1) == ysub).mean())
    ort_te = float((lo_te.argmax(-1) == yte).mean())
    n_disagree = int((lo_te.argmax(-1) != ref_te.argmax(-1)).sum())
    for b in (1, 7):  # dynamic batch
        assert sess.run(None, {"x": Xte[:b]})[0].shape == (b, N_CLASSES)
    print(f"onnxruntime:             train subset {ort_sub:.4f}  test {ort_te:.4f}  "
          f"rel max err vs torch {ort_err:.1e}  test predictions differing from torch: {n_disagree}", flush=True)
    print(f"ONNX ops: {dict(sorted(ops.items()))}  size {onnx_path.stat().st_size / 1024:.1f} KB", flush=True)
    assert ort_err < 1e-4, ort_err
    assert ort_te == dep_te and ort_sub == dep_sub, (ort_te, dep_te, ort_sub, dep_sub)
    eval_s = time.time() - t_eval

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
    np.savez(OUTDIR / "params.npz", **pz)

    rng = np.random.default_rng(SEED)
    ci = np.sort(rng.choice(len(Xtr), size=N_CALIB, replace=False))
    np.savez(OUTDIR / "calibration.npz", x=Xtr[ci].astype(np.float32), y=ytr[ci].astype(np.int64))

    metrics = dict(
        torch_train_acc=acc_tr, torch_test_acc=acc_te,
        torch_train_subset_acc=acc_sub,
        torch_convform_train_subset_acc=dep_sub, torch_convform_test_acc=dep_te,
        ort_train_subset_acc=ort_sub, ort_test_acc=ort_te, ort_test_pred_disagreements=n_disagree,
        train_subset=f"{N_ORT_TRAIN} train samples, np.random.default_rng({SEED + 1}).choice(60000, "
                     f"{N_ORT_TRAIN}, replace=False), sorted",
        ort_max_rel_err=ort_err, convform_max_abs_test_logit_diff=d_form,
        epochs=EPOCHS, batch_size=BATCH, lr=LR, lr_ssm=LR_SSM, weight_decay=WEIGHT_DECAY,
        dropout=DROPOUT, optimizer="AdamW + OneCycleLR",
        param_count=n_params, train_seconds=round(train_s, 1), eval_export_seconds=round(eval_s, 1),
        threads=args.threads,
        train_device=str(dev),
        architecture=(f"Linear(1->{H}) -> {LAYERS} x [S4D(H={H}, N={N}, D skip) -> ReLU -> "
                      f"Linear({H}->{H})] -> {POOL} over time -> Linear({H}->10)"),
        H=H, layers=LAYERS, N=N, complex_modes=N // 2, L=L, pool=POOL,
        a_real_min_abs=A_RE_MIN_ABS,
        dt_clamp=[DT_MIN, DT_MAX], dt_init=[DT_INIT_MIN, DT_INIT_MAX],
        dt_range=[float(dts.min()), float(dts.max())],
        max_abs_eigenvalue=lam_max,
        max_abs_eigenvalue_pow_L=lam_max ** (L - 1),
        kernel_tail_ratio_max=float(tail.max()), kernel_tail_ratio_median=float(np.median(tail)),
        history=history,
        n_train=int(len(Xtr)), n_test=int(len(Xte)), seed=SEED,
        onnx_opset=18, onnx_ops=dict(sorted(ops.items())),
        onnx_bytes=onnx_path.stat().st_size,
        torch_version=torch.__version__, onnx_version=onnx.__version__, onnxruntime_version=ort.__version__,
        numpy_version=np.__version__,
    )
    (OUTDIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: metrics[k] for k in ("dt_range", "max_abs_eigenvalue", "max_abs_eigenvalue_pow_L",
                                              "kernel_tail_ratio_max", "kernel_tail_ratio_median")}), flush=True)
    if ckpt.exists():
        ckpt.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
