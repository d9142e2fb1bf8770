"""The measured path (s4dc.torch.measured): a layer no adapter knows is probed,
proved linear, time-invariant and causal, and realized from its impulse
response; modules that are not are refused naming the module and the
measured deviation."""
from __future__ import annotations

import importlib.util
import re

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

from s4dc.errors import ExportError  # noqa: E402
from s4dc.torch import export  # noqa: E402
from test_adapters import D_IN, H, MEASURED, T, TwoLayer, check_done_when  # noqa: E402

NUM = r"\d\.\d\de[-+]\d\d"


def fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution over time of u (batch, time, H) with k (H, time)."""
    L = u.shape[1]
    U = torch.fft.rfft(u.transpose(1, 2), n=2 * L)
    return torch.fft.irfft(U * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L].transpose(1, 2)


class DSS(nn.Module):
    """A diagonal state space layer (Gupta et al. 2022, DSS-exp), written here:
    no adapter knows it. K[l] = Re sum_n W_n (exp(dt L_n) - 1) / L_n exp(dt L_n l)."""

    def __init__(self, h: int, n: int = 6):
        super().__init__()
        self.lam_re = nn.Parameter(-0.5 - torch.rand(h, n))
        self.lam_im = nn.Parameter(torch.randn(h, n) * 3)
        self.W = nn.Parameter(torch.randn(h, n, 2) * 0.5)
        self.log_step = nn.Parameter(torch.rand(h) * 2 - 3.5)
        self.skip = nn.Parameter(torch.randn(h))

    def kernel(self, L: int) -> torch.Tensor:
        lam = torch.complex(self.lam_re, self.lam_im)
        dtl = lam * torch.exp(self.log_step)[:, None]
        w = torch.view_as_complex(self.W) * (torch.exp(dtl) - 1) / lam
        return torch.einsum("hn,hnl->hl", w, torch.exp(dtl[..., None] * torch.arange(L))).real

    def forward(self, u):
        return fft_conv(u, self.kernel(u.shape[1])) + u * self.skip


def test_dss_done_when(tmp_path):
    torch.manual_seed(20)
    check_done_when(TwoLayer(DSS), tmp_path, MEASURED, "(any; DSS written in the test) | - | DSS | measured")


def test_named_modules_are_measured(tmp_path):
    torch.manual_seed(21)
    m = TwoLayer(DSS).eval()
    x = torch.randn(2, T, D_IN)
    proto = export(m, x, ssm_modules=["layers.0", m.layers[1]])
    assert [n.op_type for n in proto.graph.node if n.domain == "s4dc"] == ["S4DDiscrete", "S4DDiscrete"]
    assert export(m, x, ssm_modules=["layers.0", "layers.1"]).SerializeToString() == proto.SerializeToString()
    with pytest.raises(ExportError) as e:
        export(m, torch.randn(2, T, D_IN), ssm_modules=["layers.7"])
    assert str(e.value) == "ssm_modules: 'layers.7' is not a module of the model"


# --- modules the probe must refuse ---------------------------------------------------------
class Nonlinear(DSS):
    def forward(self, u):
        return fft_conv(torch.tanh(u), self.kernel(u.shape[1]))


class TimeVarying(DSS):
    def forward(self, u):
        gain = 1 + torch.arange(u.shape[1], dtype=u.dtype)[:, None] / u.shape[1]
        return fft_conv(u, self.kernel(u.shape[1])) * gain


class Bidirectional(DSS):
    def forward(self, u):
        k = self.kernel(u.shape[1])
        return fft_conv(u, k) + fft_conv(u.flip(1), k).flip(1)


class Selective(nn.Module):
    """Mamba-like: the step dt_t = softplus(w u_t + b) depends on the input."""

    def __init__(self, h: int, n: int = 4):
        super().__init__()
        self.A_log = nn.Parameter(torch.rand(h, n))
        self.w, self.b = nn.Parameter(torch.randn(h)), nn.Parameter(torch.randn(h))
        self.B, self.C = nn.Parameter(torch.randn(h, n)), nn.Parameter(torch.randn(h, n))

    def forward(self, u):
        x = u.new_zeros(u.shape[0], u.shape[2], self.A_log.shape[1])
        ys = []
        for t in range(u.shape[1]):
            dt = nn.functional.softplus(self.w * u[:, t] + self.b)[..., None]
            x = torch.exp(-dt * torch.exp(self.A_log)) * x + dt * self.B * u[:, t, :, None]
            ys.append((x * self.C).sum(-1))
        return torch.stack(ys, 1)


class Coupled(DSS):
    def __init__(self, h: int):
        super().__init__(h)
        self.mix = nn.Parameter(torch.randn(h, h))

    def forward(self, u):
        return fft_conv(u, self.kernel(u.shape[1])) @ self.mix


@pytest.mark.parametrize("layer, pattern", [
    (Nonlinear, rf"module 'layers\.0' \(Nonlinear\): not linear: f\(x1 - x2/2\) differs from f\(x1\) - f\(x2\)/2 "
                rf"by {NUM} \(relative; tolerance 0\.0001\); an input-dependent \(selective\) SSM such as Mamba is "
                r"not a linear time-invariant layer and cannot run as S4D on Loihi 2"),
    (Selective, rf"module 'layers\.0' \(Selective\): not linear: f\(x1 - x2/2\) differs .* by {NUM} .*such as "
                r"Mamba .*"),
    (TimeVarying, rf"module 'layers\.0' \(TimeVarying\): not time-invariant: the response to an impulse at step "
                  rf"24 differs from the shifted response to one at step 0 by {NUM} \(relative; tolerance "
                  r"0\.0001\)"),
    (Bidirectional, rf"module 'layers\.0' \(Bidirectional\): not causal: an impulse at step 24 changes the "
                    rf"outputs before it \({NUM} relative; tolerance 0\.0001\); a bidirectional layer cannot "
                    r"stream on Loihi 2"),
    (Coupled, rf"module 'layers\.0' \(Coupled\): its impulse response couples channels \(an output channel "
              rf"answers another channel's impulse at {NUM} of the largest response\): a MIMO layer, which "
              r"needs s4dc's MIMO support \(issue 13\)"),
])
def test_modules_that_are_not_lti_causal_siso_are_refused(layer, pattern):
    torch.manual_seed(22)
    with pytest.raises(ExportError) as e:
        export(TwoLayer(layer), torch.randn(2, T, D_IN))
    assert re.fullmatch(pattern, str(e.value)), str(e.value)


def test_bidirectional_flag_is_refused_without_probing():
    torch.manual_seed(23)
    m = TwoLayer(DSS)
    m.layers[1].bidirectional = True
    with pytest.raises(ExportError) as e:
        export(m, torch.randn(2, T, D_IN))
    assert str(e.value) == ("module 'layers.1' (DSS) is bidirectional (bidirectional=True): it reads future "
                            "time steps, so it is not causal and cannot stream on Loihi 2")


def test_gelu_after_a_measured_layer_is_refused():
    torch.manual_seed(24)
    m = TwoLayer(DSS, relu=False)
    m.layers[0] = nn.Sequential(m.layers[0], nn.GELU())
    with pytest.raises(ExportError) as e:
        export(m, torch.randn(2, T, D_IN))
    assert str(e.value).startswith("module 'layers.0.1' (GELU) follows the state space layer 'layers.0.0': "
                                   "Loihi 2 runs ReLU activations only")


def test_pointwise_modules_are_left_to_torch():
    class Scale(nn.Module):  # own parameters, custom class, but no mixing over time: not an SSM
        def __init__(self, h):
            super().__init__()
            self.s = nn.Parameter(torch.randn(h))

        def forward(self, u):
            return u * self.s

    torch.manual_seed(25)
    proto = export(TwoLayer(Scale), torch.randn(2, T, D_IN))
    assert not [n for n in proto.graph.node if n.domain == "s4dc"]


# --- real MIMO libraries: claimed by their exact adapters, never probed -------------------------
@pytest.mark.parametrize("lib, build", [
    ("s5", lambda: __import__("s5").S5(H, 4)),
    ("LRU_pytorch", lambda: __import__("LRU_pytorch").LRU(H, H, 4)),
])
def test_mimo_library_layers_go_to_their_adapters_not_the_probe(lib, build):
    import importlib.util
    if importlib.util.find_spec(lib) is None:
        pytest.skip(f"{lib} (s5-pytorch==0.2.1 / lru-pytorch==0.1.3) is not installed (the Makefile installs it)")
    torch.manual_seed(26)
    proto = export(TwoLayer(lambda h: build()), torch.randn(2, T, D_IN))
    assert [n.op_type for n in proto.graph.node if n.domain == "s4dc"] in (["MIMO", "MIMO"],
                                                                          ["MIMODiscrete", "MIMODiscrete"])


class ChannelsFirstDSS(DSS):
    def forward(self, u):  # (batch, H, time), like state-spaces' transposed layers
        return super().forward(u.transpose(1, 2)).transpose(1, 2)


class _ChannelsFirst(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.inner = ChannelsFirstDSS(h)

    def forward(self, z):
        return self.inner(z.transpose(1, 2)).transpose(1, 2)


def test_channels_first_layer_is_measured(tmp_path):
    import s4dc

    torch.manual_seed(27)
    m = TwoLayer(_ChannelsFirst).eval()
    proto = export(m, torch.randn(2, T, D_IN), tmp_path / "m.onnx")
    assert [n.op_type for n in proto.graph.node if n.domain == "s4dc"] == ["S4DDiscrete", "S4DDiscrete"]
    x = torch.randn(3, T, D_IN)
    with torch.no_grad():
        want = m(x).numpy()
    got = s4dc.compile(tmp_path / "m.onnx", float_only=True).run(x.numpy())
    assert abs(got - want).max() <= MEASURED * abs(want).max()


@pytest.mark.skipif(importlib.util.find_spec("lrnnx") is None, reason="lrnnx==1.0.0.post1 is not installed (the "
                    "Makefile installs it into .venv for the tests)")
def test_lrnnx_s4_dplr_done_when(tmp_path):
    """lrnnx's S4 is DPLR (not diagonal): no exact adapter, so it is measured.
    Its activation is inside the module, so it is set to Identity and the
    ReLU put after the layer (a ReLU inside makes the module nonlinear)."""
    from test_adapters import _lrnnx

    S4 = _lrnnx().S4

    def make(h):
        m = S4(h, d_state=16, transposed=False, final_act=None, verbose=False)
        m.conv_activation, m.mult_activation = nn.Identity(), nn.Identity()
        return m

    torch.manual_seed(28)
    check_done_when(TwoLayer(make, tuple_out=True), tmp_path, MEASURED, "lrnnx | 1.0.0.post1 | S4 (DPLR) | measured")
