"""S4D in PyTorch: the kernel from state-spaces' parameters, a causal FFT
convolution, and s4dc's reference layer `NS4D` (S4D + ReLU, no normalization).

Parameters follow the state-spaces S4D layer (Gu et al. 2022, `s4d.py`), so a
checkpoint of either loads into the other:

    log_dt (H,)          dt = exp(log_dt)
    log_A_real (H, N2)   A = -exp(log_A_real) + i A_imag     (N2 = d_state / 2)
    A_imag (H, N2)
    C (H, N2, 2)         complex C as a real view
    D (H,)

    K[h, l] = 2 Re sum_n C_n (exp(dt A_n) - 1) / A_n exp(dt A_n l)   (ZOH, B = 1)
    y = causal_conv(u, K) + D u

which is the canonical `s4dc.S4D` node with B = 1 (docs/onnx_forms.md).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn


def s4d_kernel(log_dt: torch.Tensor, log_A_real: torch.Tensor, A_imag: torch.Tensor,
               C: torch.Tensor, length: int) -> torch.Tensor:
    """K (H, length) in real arithmetic (complex tensors neither export nor run
    fast on CPU): exp(a l) cos(b l) and exp(a l) sin(b l) for dt A = a + i b."""
    dt = torch.exp(log_dt)[:, None]
    a_re, a_im = -torch.exp(log_A_real), A_imag
    c_re, c_im = (C[..., 0], C[..., 1]) if not torch.is_complex(C) else (C.real, C.imag)
    e = torch.exp(dt * a_re)
    lr, li = e * torch.cos(dt * a_im) - 1.0, e * torch.sin(dt * a_im)  # exp(dtA) - 1
    den = a_re * a_re + a_im * a_im
    qr, qi = (lr * a_re + li * a_im) / den, (li * a_re - lr * a_im) / den  # (exp(dtA) - 1) / A
    cb_re, cb_im = c_re * qr - c_im * qi, c_re * qi + c_im * qr
    ell = torch.arange(length, dtype=log_dt.dtype, device=log_dt.device)
    mag = torch.exp((dt * a_re)[..., None] * ell)
    ph = (dt * a_im)[..., None] * ell
    return 2.0 * (torch.einsum("hn,hnl->hl", cb_re, mag * torch.cos(ph))
                  - torch.einsum("hn,hnl->hl", cb_im, mag * torch.sin(ph)))


class CausalFFTConv(torch.autograd.Function):
    """y[..., t] = sum_{s<=t} k[..., t-s] u[..., s] via an FFT of length n >= 2L-1.

    u (B, H, L), k (H, L). A hand-written backward (one rfft + one irfft of the batch,
    the kernel gradient summed over the batch in the frequency domain) is about twice
    as fast on CPU as autograd through rfft/irfft.
    """

    @staticmethod
    def forward(ctx, u, k, n: int):
        Lu = u.shape[-1]
        U = torch.fft.rfft(u, n=n)
        Kf = torch.fft.rfft(k, n=n)
        ctx.save_for_backward(U, Kf)
        ctx.n, ctx.L = n, Lu
        return torch.fft.irfft(U * Kf, n=n)[..., :Lu]

    @staticmethod
    def backward(ctx, gy):
        U, Kf = ctx.saved_tensors
        n, Lu = ctx.n, ctx.L
        G = torch.fft.rfft(gy.contiguous(), n=n)  # gy arrives strided (transpose backward)
        gu = torch.fft.irfft(G * Kf.conj(), n=n)[..., :Lu] if ctx.needs_input_grad[0] else None
        gk = torch.fft.irfft((G * U.conj()).sum(0), n=n)[..., :Lu] if ctx.needs_input_grad[1] else None
        return gu, gk, None


def fft_size(L: int) -> int:
    """Smallest n >= 2L - 1 whose only prime factors are 2, 3, 5 (fast FFT sizes)."""
    n = 2 * L - 1
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y[b, h, t] = sum_{s <= t} k[h, t - s] u[b, h, s] by FFT; u (B, H, L), k (H, L)."""
    return CausalFFTConv.apply(u.contiguous(), k, fft_size(u.shape[-1]))


def s4d_params(module: nn.Module, kernel_owner: nn.Module | None = None) -> dict[str, np.ndarray]:
    """Continuous-time (dt, A, B, C, D) in float64 of an S4D-shaped module,
    in the canonical form's terms (B = 1)."""
    k = kernel_owner if kernel_owner is not None else module
    with torch.no_grad():
        f64 = lambda t: t.detach().cpu().double()  # noqa: E731 - parameters may live on a GPU
        C = k.C.detach().cpu()
        C = torch.view_as_complex(C.double().contiguous()) if not torch.is_complex(C) else C.to(torch.complex128)
        A = -torch.exp(f64(k.log_A_real)) + 1j * f64(k.A_imag)
        return {"dt": torch.exp(f64(k.log_dt)).numpy().copy(), "A": A.numpy().copy(),
                "B": np.ones(tuple(A.shape), complex), "C": C.numpy().copy(),
                "D": f64(module.D).numpy().copy()}


class NS4D(nn.Module):
    """s4dc's reference n-S4D layer: y = ReLU(causal_conv(u, K) + D u).

    Input and output (batch, time, H) like `nn.Linear` (`transposed=True`:
    (batch, H, time) like state-spaces). S4D-Lin initialization
    (A = -1/2 + i pi n), dt log-uniform in [dt_min, dt_max]. `activation=False`
    drops the ReLU (a plain S4D layer). `s4dc.torch.export` writes it as a
    canonical `s4dc.S4D` node, exactly.
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 activation: bool = True, transposed: bool = False) -> None:
        super().__init__()
        H, n2 = d_model, d_state // 2
        self.h, self.n, self.transposed, self.activation = H, d_state, transposed, activation
        self.log_dt = nn.Parameter(torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(H, n2)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n2, dtype=torch.float32).repeat(H, 1))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, n2, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(H))

    def kernel(self, length: int) -> torch.Tensor:
        return s4d_kernel(self.log_dt, self.log_A_real, self.A_imag, self.C, length)

    def core(self, u: torch.Tensor) -> torch.Tensor:
        """causal_conv(u, K) + D u on channels-first u (batch, H, time)."""
        return causal_conv(u, self.kernel(u.shape[-1])) + u * self.D[:, None]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        # (`s4dc.torch.export` writes the layer as one canonical s4dc.S4D node instead)
        y = self.core(u.contiguous() if self.transposed else u.transpose(1, 2).contiguous())
        y = y if self.transposed else y.transpose(1, 2)
        return torch.relu(y) if self.activation else y
