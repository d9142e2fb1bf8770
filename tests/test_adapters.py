"""Exact adapters (s4dc.torch.adapters) and the measured path
(s4dc.torch.measured), issue 15's "done when": for each layer a small model
(Linear -> 2 SSM layers with ReLU -> Linear, fixed seed) is exported with
s4dc.torch.export, compiled float (within 1e-4 relative of torch for exact
adapters, the fit tolerance for measured layers) and quantized (within 5%
relative RMS of torch)."""
from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import s4dc  # noqa: E402
from s4dc.errors import ExportError  # noqa: E402
from s4dc.torch import NS4D, export  # noqa: E402

EXACT = 1e-4      # relative max error of the float compile, exact adapters
MEASURED = 1e-3   # the same for measured layers: kernel fit 1e-5 per channel, through two layers and float32
QUANT = 0.05      # relative RMS of the quantized compile
T, D_IN, H, D_OUT = 48, 2, 8, 3
FIXTURES = Path(__file__).parent / "fixtures" / "torch"
HAS_LRNNX = importlib.util.find_spec("lrnnx") is not None
needs_lrnnx = pytest.mark.skipif(not HAS_LRNNX, reason="lrnnx==1.0.0.post1 is not installed (the Makefile "
                                 "installs it into .venv for the tests)")


class TwoLayer(nn.Module):
    """Linear -> SSM -> ReLU -> SSM -> ReLU -> Linear; `make(H)` builds one SSM
    layer (its ReLU included or not: `relu`)."""

    def __init__(self, make, relu: bool = True, tuple_out: bool = False):
        super().__init__()
        self.enc, self.dec = nn.Linear(D_IN, H), nn.Linear(H, D_OUT)
        self.layers = nn.ModuleList([make(H), make(H)])
        self.relu, self.tuple_out = relu, tuple_out

    def forward(self, x):
        z = self.enc(x)
        for l in self.layers:
            z = l(z)
            z = z[0] if self.tuple_out else z
            z = torch.relu(z) if self.relu else z
        return self.dec(z)


def rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2)))


def check_done_when(model: nn.Module, tmp_path, float_tol: float, what: str) -> dict:
    """Export, compile float and quantized, compare with torch; returns the errors
    and prints them (`pytest -s -k done_when` prints docs/torch.md's table)."""
    model.eval()
    path = tmp_path / "m.onnx"
    export(model, torch.randn(2, T, D_IN), path)
    g = np.random.default_rng(1)
    x = g.standard_normal((8, T, D_IN)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    net = s4dc.compile(path, float_only=True)
    assert sum(l.opdef.recurrent for l in net.graph.layers) == 2  # ssm (SISO) or mimo
    f_err = float(np.abs(net.run(x) - want).max() / np.abs(want).max())
    assert f_err <= float_tol
    cal = g.standard_normal((64, T, D_IN)).astype(np.float32)
    q_err = rel_rms(s4dc.compile(path, calibration=cal, place=False).run(x), want)
    assert q_err <= QUANT
    print(f"\n| {what} | {f_err:.1e} | {q_err:.1e} |")
    return {"float": f_err, "quantized": q_err}


# --- s4dc's NS4D and the state-spaces S4D -------------------------------------------------
def test_ns4d_done_when(tmp_path):
    torch.manual_seed(10)
    check_done_when(TwoLayer(lambda h: NS4D(h, 16), relu=False), tmp_path, EXACT, "s4dc | 0.1.0 | NS4D | exact")


class SSKernel(nn.Module):
    """state-spaces `models/s4/s4d.py` S4DKernel, as published (ZOH, B = 1)."""

    def __init__(self, h: int, n: int = 16):
        super().__init__()
        self.log_dt = nn.Parameter(torch.rand(h) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(h, n // 2, dtype=torch.cfloat)))
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(h, n // 2)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n // 2).float().repeat(h, 1))

    def forward(self, L: int):
        dt = torch.exp(self.log_dt)
        C = torch.view_as_complex(self.C)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtA = A * dt.unsqueeze(-1)
        C = C * (torch.exp(dtA) - 1.0) / A
        return 2 * torch.einsum("hn, hnl -> hl", C, torch.exp(dtA.unsqueeze(-1) * torch.arange(L))).real


class SSS4D(nn.Module):
    """state-spaces S4D with ReLU and no output GLU, (batch, time, H) in and out."""

    def __init__(self, h: int):
        super().__init__()
        self.D = nn.Parameter(torch.randn(h))
        self.kernel = SSKernel(h)

    def forward(self, u):
        u = u.transpose(-1, -2)
        L = u.size(-1)
        k = self.kernel(L=L)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
        return (y + u * self.D.unsqueeze(-1)).transpose(-1, -2), None


def test_state_spaces_s4d_done_when(tmp_path):
    torch.manual_seed(11)
    check_done_when(TwoLayer(SSS4D, tuple_out=True), tmp_path, EXACT,
                    "state-spaces (models/s4/s4d.py) | - | S4D | exact")


class SSS4DPublished(SSS4D):
    """The state-spaces S4D as published: GELU, then a pointwise Conv1d and GLU."""

    def __init__(self, h: int):
        super().__init__(h)
        self.activation = nn.GELU()
        self.output_linear = nn.Sequential(nn.Conv1d(h, 2 * h, kernel_size=1), nn.GLU(dim=-2))

    def forward(self, u):
        y, _ = super().forward(u)
        return self.output_linear(self.activation(y).transpose(-1, -2)).transpose(-1, -2), None


def test_state_spaces_s4d_with_its_gelu_and_glu_is_refused():
    torch.manual_seed(17)
    with pytest.raises(ExportError) as e:
        export(TwoLayer(SSS4DPublished, tuple_out=True), torch.randn(1, T, D_IN))
    assert str(e.value).startswith("module 'layers.0.activation' (GELU) follows the state space layer 'layers.0': "
                                   "Loihi 2 runs ReLU activations only (the n-S4D model); replace it with nn.ReLU")


def test_registry_matches_by_class_path_and_imports_no_library():
    code = ("import sys, s4dc.torch, s4dc.torch.adapters as a; "
            "print(sorted(a.ADAPTERS)); print([m for m in ('lrnnx', 's5', 'LRU_pytorch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    centaurus = [f"lrnnx.models.lti.centaurus.Centaurus{v}" for v in ("DWS", "Full", "Neck", "PWNeck")]
    assert out.splitlines() == [str(["LRU_pytorch.LRU.LRU", *centaurus, "lrnnx.models.lti.lru.LRU",
                                     "lrnnx.models.lti.s4d.S4D", "lrnnx.models.lti.s5.S5", "s4dc.torch.layers.NS4D",
                                     "s5.s5_model.S5"]), "[]"]


# --- lrnnx 1.0.0.post1 S4D ---------------------------------------------------------------------
def _lrnnx():
    sys.path.insert(0, str(FIXTURES))
    try:
        import lrnnx_standins
    finally:
        sys.path.remove(str(FIXTURES))
    return lrnnx_standins.import_lrnnx_lti()


def lrnnx_s4d(relu: bool = True, **kw):
    """lrnnx's S4D with ReLU after the convolution (its default is GELU) and no
    output projection, the n-S4D form Loihi 2 runs."""
    S4D = _lrnnx().S4D
    kw = {"transposed": False, "final_act": None, **kw}

    def make(h):
        m = S4D(h, d_state=16, verbose=False, **kw)
        if relu:
            m.conv_activation, m.mult_activation = nn.ReLU(), nn.Identity()
        return m
    return make


@needs_lrnnx
def test_lrnnx_s4d_done_when(tmp_path):
    torch.manual_seed(13)
    check_done_when(TwoLayer(lrnnx_s4d(), relu=False, tuple_out=True), tmp_path, EXACT,
                    "lrnnx | 1.0.0.post1 | S4D | exact")


@needs_lrnnx
@pytest.mark.parametrize("kw", [dict(disc="bilinear"), dict(dt_tie=False, transposed=True),
                                dict(real_transform="softplus", n_ssm=2)])
def test_lrnnx_s4d_variants_export_exactly(kw, tmp_path):
    torch.manual_seed(14)
    transposed = kw.get("transposed", False)
    m = TwoLayer(lrnnx_s4d(**kw), relu=False, tuple_out=True).eval()
    if transposed:  # (batch, H, time) inside: the model transposes around each layer
        inner = m.layers
        m.layers = nn.ModuleList([_Transposed(l) for l in inner])
    path = tmp_path / "m.onnx"
    export(m, torch.randn(2, T, D_IN), path)
    x = np.random.default_rng(2).standard_normal((4, T, D_IN)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    got = s4dc.compile(path, float_only=True).run(x)
    assert np.abs(got - want).max() <= EXACT * np.abs(want).max()


class _Transposed(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, z):
        y, s = self.layer(z.transpose(1, 2))
        return y.transpose(1, 2), s


@needs_lrnnx
def test_lrnnx_s4d_with_its_default_gelu_is_refused():
    torch.manual_seed(15)
    with pytest.raises(ExportError) as e:
        export(TwoLayer(lrnnx_s4d(relu=False), relu=False, tuple_out=True), torch.randn(1, T, D_IN))
    assert str(e.value) == ("module 'layers.0.conv_activation' (GELU) follows the state space layer 'layers.0': "
                            "Loihi 2 runs ReLU activations only (the n-S4D model); replace it with nn.ReLU, "
                            "fine-tune the model in float, export it again, and recover quantization loss "
                            "with s4dc.torch.qat.QATNetwork (docs/torch.md)")


@needs_lrnnx
def test_lrnnx_s4d_called_with_padding_lengths_is_refused():
    class Padded(TwoLayer):
        def forward(self, x):
            z = self.enc(x)
            for l in self.layers:
                z = torch.relu(l(z, lengths=T)[0])  # an int equal to the length masks nothing: accepted
            return self.dec(self.layers[0](z, lengths=torch.tensor([T - 2]))[0])

    torch.manual_seed(18)
    with pytest.raises(ExportError) as e:
        export(Padded(lrnnx_s4d(), relu=False), torch.randn(1, T, D_IN))
    assert str(e.value) == ("module 'layers.0' (S4D): called with lengths= (padding masks); a stream has no "
                            "padding, export the model without it")
