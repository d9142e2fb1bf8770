"""Exact MIMO adapters (issue 15, on issue 13's MIMO form): lrnnx 1.0.0.post1
S5, LRU and Centaurus, s5-pytorch 0.2.1 S5, lru-pytorch 0.1.3 LRU, and the
multi-channel S4D (state-spaces and lrnnx, channels > 1). Each "done when"
test builds Linear -> 2 layers with ReLU -> Linear (fixed seed), exports it
with s4dc.torch.export, compiles it float (within 1e-4 relative of torch)
and quantized (within 5% relative RMS); `pytest -s -k done_when` prints the
rows of docs/torch.md's table."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import s4dc  # noqa: E402
from s4dc.errors import ExportError  # noqa: E402
from s4dc.torch import export  # noqa: E402
from test_adapters import (D_IN, D_OUT, EXACT, H, T, SSKernel, TwoLayer, _lrnnx, check_done_when,  # noqa: E402
                           lrnnx_s4d, needs_lrnnx)
from test_lava import assert_bit_exact, needs_lava  # noqa: E402


def _needs(mod: str, pin: str):
    return pytest.mark.skipif(importlib.util.find_spec(mod) is None,
                              reason=f"{pin} is not installed (the Makefile installs it into .venv for the tests)")


needs_s5 = _needs("s5", "s5-pytorch==0.2.1")
needs_lru = _needs("LRU_pytorch", "lru-pytorch==0.1.3")


def s4dc_ops(model: nn.Module) -> list[str]:
    proto = export(model.eval(), torch.randn(2, T, D_IN))
    return [n.op_type for n in proto.graph.node if n.domain == "s4dc"]


def float_error(model: nn.Module, tmp_path) -> float:
    """Export, compile float, max error relative to torch's output's max."""
    model.eval()
    export(model, torch.randn(2, T, D_IN), tmp_path / "m.onnx")
    x = np.random.default_rng(2).standard_normal((4, T, D_IN)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = s4dc.compile(tmp_path / "m.onnx", float_only=True).run(x)
    return float(np.abs(got - want).max() / np.abs(want).max())


class Chain(nn.Module):
    """Linear -> layer -> ReLU -> layer -> ReLU -> Linear for layers that widen
    their input (`make(h_in)` returns a layer with `grow * h_in` outputs)."""

    def __init__(self, make, grow: int, tuple_out: bool = False):
        super().__init__()
        self.enc = nn.Linear(D_IN, H)
        self.layers = nn.ModuleList([make(H), make(grow * H)])
        self.dec = nn.Linear(grow * grow * H, D_OUT)
        self.tuple_out = tuple_out

    def forward(self, x):
        z = self.enc(x)
        for layer in self.layers:
            z = layer(z)
            z = torch.relu(z[0] if self.tuple_out else z)
        return self.dec(z)


# --- lrnnx 1.0.0.post1: S5, LRU, Centaurus, multi-channel S4D ---------------------------------
@needs_lrnnx
def test_lrnnx_s5_done_when(tmp_path):
    torch.manual_seed(30)
    check_done_when(TwoLayer(lambda h: _lrnnx().S5(h, 16, discretization="zoh")), tmp_path, EXACT,
                    "lrnnx | 1.0.0.post1 | S5 (zoh) | exact")


@needs_lrnnx
def test_lrnnx_lru_done_when(tmp_path):
    torch.manual_seed(31)
    check_done_when(TwoLayer(lambda h: _lrnnx().LRU(h, 16)), tmp_path, EXACT, "lrnnx | 1.0.0.post1 | LRU | exact")


@needs_lrnnx
def test_lrnnx_centaurus_done_when(tmp_path):
    torch.manual_seed(32)
    check_done_when(TwoLayer(lambda h: _lrnnx().CentaurusNeck(h, 8, 4)), tmp_path, EXACT,
                    "lrnnx | 1.0.0.post1 | CentaurusNeck | exact")


@needs_lrnnx
@pytest.mark.parametrize("variant, n", [("CentaurusDWS", H), ("CentaurusFull", H * H), ("CentaurusPWNeck", 4)])
def test_lrnnx_centaurus_variants_export_exactly(variant, n, tmp_path):
    torch.manual_seed(33)
    m = TwoLayer(lambda h: getattr(_lrnnx(), variant)(h, n, 2))
    assert s4dc_ops(m) == ["MIMODiscrete", "MIMODiscrete"]
    assert float_error(m, tmp_path) <= EXACT


@needs_lrnnx
def test_lrnnx_s5_dirac_exports_exactly(tmp_path):
    torch.manual_seed(34)
    m = TwoLayer(lambda h: _lrnnx().S5(h, 16, discretization="dirac"))
    assert s4dc_ops(m) == ["MIMODiscrete", "MIMODiscrete"]
    assert float_error(m, tmp_path) <= EXACT


@needs_lrnnx
def test_lrnnx_s5_bilinear_is_refused_as_unstable():
    torch.manual_seed(35)
    with pytest.raises(ExportError) as e:
        export(TwoLayer(lambda h: _lrnnx().S5(h, 16, discretization="bilinear")), torch.randn(1, T, D_IN))
    # lrnnx's bilinear is (1 + dt A/2)^-1 (1 - dt A/2): |lambda| > 1 for every mode with Re A < 0
    assert str(e.value).startswith("module 'layers.0' (S5): its bilinear rule (1 + dt A/2)^-1 (1 - dt A/2) with "
                                   "Re A < 0 gives mode ")
    assert str(e.value).endswith(" >= 1; the recurrence grows without bound, so it cannot run as a stable state "
                                 "space")


@needs_lrnnx
def test_lrnnx_s5_ignores_lengths_as_lrnnx_does(tmp_path):
    class Padded(TwoLayer):  # lrnnx's S5 forward takes lengths= and does not read it
        def forward(self, x):
            z = self.enc(x)
            for layer in self.layers:
                z = torch.relu(layer(z, lengths=torch.tensor([T - 2])))
            return self.dec(z)

    torch.manual_seed(36)
    assert float_error(Padded(lambda h: _lrnnx().S5(h, 16, discretization="zoh")), tmp_path) <= EXACT


@needs_lrnnx
@pytest.mark.parametrize("swap", [False, True])
def test_lrnnx_multichannel_s4d_exports_exactly(swap, tmp_path):
    torch.manual_seed(37)

    def make(h):
        m = lrnnx_s4d(channels=2, swap_channels=swap)(h)
        return m
    m = Chain(make, grow=2, tuple_out=True)
    assert s4dc_ops(m) == ["MIMO", "MIMO"]
    assert float_error(m, tmp_path) <= EXACT


# --- s5-pytorch 0.2.1 S5 ------------------------------------------------------------------------
@needs_s5
def test_s5_pytorch_s5_done_when(tmp_path):
    import s5

    torch.manual_seed(40)
    check_done_when(TwoLayer(lambda h: s5.S5(h, 16)), tmp_path, EXACT, "s5-pytorch | 0.2.1 | S5 | exact")


@needs_s5
@pytest.mark.parametrize("variant, ops", [("bilinear", "MIMOBilinear"), ("degree2", "MIMODiscrete"),
                                          ("step_scale", "MIMO"), ("step_scale_keyword", "MIMO")])
def test_s5_pytorch_variants_export_exactly(variant, ops, tmp_path):
    import s5

    torch.manual_seed(41)

    def make(h):
        if variant == "degree2":  # B_bar ** degree: s5-pytorch takes it for a square B only (P = H)
            return s5.S5(h, h, degree=2)
        m = s5.S5(h, 16)
        if variant == "bilinear":
            m.seq.discretize = s5.s5_model.discretize_bilinear
        return m

    class Scaled(TwoLayer):  # step_scale 0.5 given positionally, as the adapter sees it
        def forward(self, x):
            z = self.enc(x)
            for layer in self.layers:
                z = torch.relu(layer(z, 0.5))
            return self.dec(z)

    class ScaledKeyword(TwoLayer):  # the same by keyword (it was refused: "another step_scale")
        def forward(self, x):
            z = self.enc(x)
            for layer in self.layers:
                z = torch.relu(layer(z, step_scale=0.5))
            return self.dec(z)

    m = {"step_scale": Scaled, "step_scale_keyword": ScaledKeyword}.get(variant, TwoLayer)(make)
    assert s4dc_ops(m) == [ops, ops]
    assert float_error(m, tmp_path) <= EXACT


@needs_s5
@pytest.mark.parametrize("kw, message", [
    (dict(bidir=True), "module 'layers.0' (S5) is bidirectional (bidir=True): it reads future time steps, so it is "
                       "not causal and cannot stream on Loihi 2"),
    (dict(liquid=True), "module 'layers.0' (S5): liquid=True (Liquid-S4) makes its state matrix lambda + B u depend "
                        "on the input: not a time-invariant layer, it cannot run as a state space on Loihi 2"),
])
def test_s5_pytorch_bidirectional_and_liquid_are_refused(kw, message):
    import s5

    torch.manual_seed(42)
    with pytest.raises(ExportError) as e:
        export(TwoLayer(lambda h: s5.S5(h, 16, **kw)), torch.randn(2, T, D_IN))
    assert str(e.value) == message


@needs_s5
def test_s5_pytorch_with_a_growing_mode_is_refused():
    import s5

    torch.manual_seed(45)
    m = TwoLayer(lambda h: s5.S5(h, 16))
    with torch.no_grad():  # training can push an eigenvalue's real part past zero: s5-pytorch does not clip it
        m.layers[1].seq.Lambda[3] = torch.complex(torch.tensor(0.5), m.layers[1].seq.Lambda[3].imag)
    with pytest.raises(ExportError) as e:
        export(m, torch.randn(2, T, D_IN))
    lam = math.exp(0.5 * math.exp(float(m.layers[1].seq.log_step[3])))
    assert str(e.value) == (f"module 'layers.1' (S5): its zoh rule gives mode 3 the eigenvalue |lambda| = {lam:.6g} "
                            ">= 1; the recurrence grows without bound, so it cannot run as a stable state space")


@needs_s5
def test_s5_pytorch_per_sequence_step_scale_is_refused():
    import s5

    class PerSequence(TwoLayer):
        def forward(self, x):
            return self.dec(self.layers[0](self.enc(x), torch.arange(1, x.shape[0] + 1.0)))

    torch.manual_seed(43)
    with pytest.raises(ExportError) as e:
        export(PerSequence(lambda h: s5.S5(h, 16)), torch.randn(2, T, D_IN))
    assert str(e.value) == ("module 'layers.0' (S5): step_scale=tensor([1., 2.]) gives the sequences different "
                            "time steps; export it with one scalar step_scale")


@needs_s5
def test_s5_pytorch_block_exports_and_compile_names_its_layernorm(tmp_path):
    """S5Block (pre-LayerNorm, GELU, GEGLU around the S5): the S5 is exported
    exactly, the rest by torch; s4dc.compile refuses the LayerNorm, naming it."""
    import s5

    torch.manual_seed(44)
    m = TwoLayer(lambda h: s5.s5_model.S5Block(h, 16, bidir=False)).eval()
    proto = export(m, torch.randn(2, T, D_IN), tmp_path / "m.onnx")
    assert [n.op_type for n in proto.graph.node if n.domain == "s4dc"] == ["MIMO", "MIMO"]
    with pytest.raises(s4dc.errors.UnsupportedOpError) as e:
        s4dc.compile(tmp_path / "m.onnx", float_only=True)
    assert str(e.value).startswith("node 'node_layer_norm' (LayerNormalization) in torch module "
                                   "'layers.0.attn_norm' (LayerNorm): normalization over features at run time is "
                                   "not supported")


# --- lru-pytorch 0.1.3 LRU ----------------------------------------------------------------------
@needs_lru
def test_lru_pytorch_lru_done_when(tmp_path):
    import LRU_pytorch

    torch.manual_seed(50)
    check_done_when(TwoLayer(lambda h: LRU_pytorch.LRU(h, h, 16)), tmp_path, EXACT,
                    "lru-pytorch | 0.1.3 | LRU | exact")


@needs_lru
def test_lru_pytorch_lru_with_other_output_width_exports_exactly(tmp_path):
    import LRU_pytorch

    torch.manual_seed(51)
    m = Chain(lambda h: LRU_pytorch.LRU(h, 2 * h, 16), grow=2)
    assert s4dc_ops(m) == ["MIMODiscrete", "MIMODiscrete"]
    assert float_error(m, tmp_path) <= EXACT


@needs_lru
def test_lru_pytorch_called_with_a_state_is_refused():
    import LRU_pytorch

    class WithState(TwoLayer):
        def forward(self, x):
            s = torch.zeros(16, dtype=torch.complex64)
            return self.dec(self.layers[0](self.enc(x), s))

    torch.manual_seed(52)
    with pytest.raises(ExportError) as e:
        export(WithState(lambda h: LRU_pytorch.LRU(h, h, 16)), torch.randn(2, T, D_IN))
    assert str(e.value) == ("module 'layers.0' (LRU): called with state= (an initial state); a stream starts "
                            "from zero")


# --- state-spaces S4D with channels > 1 -----------------------------------------------------------
class SSKernelChannels(SSKernel):
    """state-spaces' diagonal kernel with `channels` output heads: C
    (channels, H, N/2, 2), the kernel (channels, H, L)."""

    def __init__(self, h: int, channels: int, n: int = 16):
        super().__init__(h, n)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(channels, h, n // 2, dtype=torch.cfloat)))

    def forward(self, L: int):
        dt = torch.exp(self.log_dt)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtA = A * dt.unsqueeze(-1)
        C = torch.view_as_complex(self.C) * (torch.exp(dtA) - 1.0) / A
        return 2 * torch.einsum("chn, hnl -> chl", C, torch.exp(dtA.unsqueeze(-1) * torch.arange(L))).real


class SSS4DChannels(nn.Module):
    """state-spaces' FFTConv with a diagonal kernel and channels > 1: D (channels,
    H), y (B, channels, H, L) rearranged 'b c h l -> b (c h) l'; ReLU, no GLU."""

    def __init__(self, h: int, channels: int = 2):
        super().__init__()
        self.D = nn.Parameter(torch.randn(channels, h))
        self.kernel = SSKernelChannels(h, channels)

    def forward(self, u):
        u = u.transpose(-1, -2)  # (B, H, L)
        L = u.size(-1)
        k = self.kernel(L=L)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L).unsqueeze(1) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
        y = y + torch.einsum("bhl,ch->bchl", u, self.D)
        return y.reshape(y.shape[0], -1, L).transpose(-1, -2), None


def test_state_spaces_multichannel_s4d_done_when(tmp_path):
    torch.manual_seed(60)
    m = Chain(SSS4DChannels, grow=2, tuple_out=True)
    assert s4dc_ops(m) == ["MIMO", "MIMO"]
    check_done_when(m, tmp_path, EXACT, "state-spaces (models/s4/s4d.py) | - | S4D, channels=2 | exact")


def test_state_spaces_multichannel_s4d_with_wrong_d_is_refused():
    torch.manual_seed(61)
    m = Chain(SSS4DChannels, grow=2, tuple_out=True)
    m.layers[0].D = nn.Parameter(torch.randn(H))
    with pytest.raises(ExportError) as e:
        export(m, torch.randn(1, T, D_IN))
    assert str(e.value) == "module 'layers.0.kernel' (SSKernelChannels): D has shape (8,), expected (2, 8)"


def test_channels_mapping_is_the_writers():
    """The state-spaces mapping is the canonical writer's: P = H N modes, mode
    (h, n) driven by input h, outputs c-major."""
    from s4dc.torch.adapters.state_spaces import channels_mimo

    g = np.random.default_rng(3)
    H_, N, ch = 3, 2, 2
    p = {"dt": g.uniform(0.01, 0.1, H_), "A": -g.uniform(0.1, 1, (H_, N)) + 1j * g.normal(size=(H_, N)),
         "B": np.ones((H_, N), complex), "C": g.normal(size=(ch, H_, N)) + 1j * g.normal(size=(ch, H_, N)),
         "D": g.normal(size=(ch, H_))}
    m = channels_mimo(p)
    assert m["B"].shape == (H_ * N, H_) and m["C"].shape == (ch * H_, H_ * N) and m["D"].shape == (ch * H_, H_)
    assert np.array_equal(m["C"][1 * H_ + 2, 2 * N:3 * N], p["C"][1, 2]) and m["D"][1 * H_ + 2, 2] == p["D"][1, 2]
    assert np.array_equal(m["A"], p["A"].reshape(-1)) and math.isclose(m["dt"][N], p["dt"][1])


@needs_lru
def test_mimo_nodes_export_through_the_torchscript_exporter_too(tmp_path):
    """The legacy exporter types the node's output (batch, time, H_out) from C."""
    import LRU_pytorch

    torch.manual_seed(53)
    m = Chain(lambda h: LRU_pytorch.LRU(h, 2 * h, 16), grow=2).eval()
    proto = export(m, torch.randn(2, T, D_IN), tmp_path / "m.onnx", exporter="torchscript")
    assert [n.op_type for n in proto.graph.node if n.domain == "s4dc"] == ["MIMODiscrete", "MIMODiscrete"]
    x = np.random.default_rng(4).standard_normal((3, T, D_IN)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    got = s4dc.compile(tmp_path / "m.onnx", float_only=True).run(x)
    assert np.abs(got - want).max() <= EXACT * np.abs(want).max()


# --- Lava: an exported library model runs on the Lava backend bit-exactly -------------------
@needs_lava
@needs_s5
@needs_lru
@pytest.mark.parametrize("lib", ["s5-pytorch", "lru-pytorch"])
def test_exported_mimo_library_model_runs_in_lava_bit_exactly(lib, tmp_path):
    import LRU_pytorch
    import s5

    torch.manual_seed(70)
    make = (lambda h: s5.S5(h, 16)) if lib == "s5-pytorch" else (lambda h: LRU_pytorch.LRU(h, h, 16))
    m = TwoLayer(make).eval()
    export(m, torch.randn(2, T, D_IN), tmp_path / "m.onnx")
    g = np.random.default_rng(5)
    net = s4dc.compile(tmp_path / "m.onnx", calibration=g.standard_normal((16, T, D_IN)).astype(np.float32))
    net.save(tmp_path / "out")
    assert_bit_exact(tmp_path / "out", g.standard_normal((2, T, D_IN)).astype(np.float32))
