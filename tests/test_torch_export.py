"""s4dc.torch.export: NS4D and state-spaces-shaped S4D models to ONNX that
s4dc compiles exactly (float outputs within 1e-4 of torch's), and the
errors for modules that only look like S4D."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import s4dc  # noqa: E402
from s4dc.errors import ExportError  # noqa: E402
from s4dc.torch import NS4D, export  # noqa: E402

BOUND = 1e-4


# --- a state-spaces-shaped S4D layer, written here from the published equations
# (Gu et al. 2022, "On the Parameterization and Initialization of Diagonal State
# Space Models"): ZOH, B = 1, kernel in complex arithmetic, FFT convolution.
class S4DKernel(nn.Module):
    def __init__(self, H: int, N: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        self.log_dt = nn.Parameter(torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, N // 2, dtype=torch.cfloat)))
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(H, N // 2)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(N // 2).float().repeat(H, 1))

    def forward(self, L: int) -> torch.Tensor:
        dt = torch.exp(self.log_dt)
        C = torch.view_as_complex(self.C)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtA = A * dt.unsqueeze(-1)
        K = dtA.unsqueeze(-1) * torch.arange(L, device=A.device)
        C = C * (torch.exp(dtA) - 1.0) / A
        return 2 * torch.einsum("hn, hnl -> hl", C, torch.exp(K)).real


class S4D(nn.Module):
    """The state-spaces S4D layer's shape; ReLU instead of GELU and a pointwise
    Conv1d instead of Conv1d+GLU, so the whole layer maps to Loihi 2."""

    def __init__(self, H: int, N: int = 64, transposed: bool = True, skip: bool = True):
        super().__init__()
        self.h, self.n, self.transposed, self.skip = H, N, transposed, skip
        self.D = nn.Parameter(torch.randn(H))
        self.kernel = S4DKernel(H, N)
        self.activation = nn.ReLU()
        self.output_linear = nn.Conv1d(H, H, kernel_size=1)

    def forward(self, u, **kwargs):
        if not self.transposed:
            u = u.transpose(-1, -2)
        L = u.size(-1)
        k = self.kernel(L=L)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
        if self.skip:
            y = y + u * self.D.unsqueeze(-1)
        y = self.output_linear(self.activation(y))
        if not self.transposed:
            y = y.transpose(-1, -2)
        return y, None


class SSModel(nn.Module):
    def __init__(self, transposed: bool, d_in: int = 3, H: int = 16, layers: int = 2, d_out: int = 4,
                 layer=S4D):
        super().__init__()
        self.transposed = transposed
        self.encoder = nn.Linear(d_in, H)
        self.layers = nn.ModuleList([layer(H, 16, transposed=transposed) for _ in range(layers)])
        self.decoder = nn.Linear(H, d_out)

    def forward(self, x):
        x = self.encoder(x)
        if self.transposed:
            x = x.transpose(-1, -2)
        for l in self.layers:
            z, _ = l(x)
            x = z + x  # residual
        if self.transposed:
            x = x.transpose(-1, -2)
        return self.decoder(x.mean(dim=1))


class NS4DModel(nn.Module):
    def __init__(self, d_in: int = 1, H: int = 8, d_out: int = 3, seq_out: bool = False):
        super().__init__()
        self.seq_out = seq_out
        self.enc = nn.Linear(d_in, H)
        self.body = nn.Sequential(NS4D(H, 16), nn.Linear(H, H), NS4D(H, 8, activation=False))
        self.dec = nn.Linear(H, d_out)

    def forward(self, x):
        z = self.body(self.enc(x))
        return self.dec(z if self.seq_out else z.mean(dim=1))


def _compare(model, x_example, tmp_path, rng, T: int, d_in: int, exporter: str):
    path = tmp_path / "m.onnx"
    export(model, x_example, path, exporter=exporter)
    net = s4dc.compile(path, float_only=True)
    assert not any(l.op == "conv" for l in net.graph.layers)  # canonical nodes: no kernel fit
    assert sum(l.op == "ssm" for l in net.graph.layers) >= 2
    for batch in (1, 4):
        x = rng.standard_normal((batch, T, d_in)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = net.run(x)
        assert np.abs(got - want).max() <= BOUND * np.abs(want).max()
    return path


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("transposed", [True, False])
def test_state_spaces_shaped_model_exports_exactly(transposed, exporter, tmp_path, rng):
    torch.manual_seed(0)
    m = SSModel(transposed).eval()
    _compare(m, torch.randn(2, 50, 3), tmp_path, rng, 50, 3, exporter)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("seq_out", [False, True])
def test_ns4d_model_exports_exactly(seq_out, exporter, tmp_path, rng):
    torch.manual_seed(1)
    m = NS4DModel(seq_out=seq_out).eval()
    _compare(m, torch.randn(2, 40, 1), tmp_path, rng, 40, 1, exporter)


def test_ns4d_channels_first_and_state_spaces_checkpoint_names():
    torch.manual_seed(2)
    a = NS4D(6, 8, transposed=True, activation=False)
    b = S4D(6, 8)
    b.kernel.load_state_dict({k: v for k, v in a.state_dict().items() if k != "D"})
    b.D.data.copy_(a.D.data)
    u = torch.randn(2, 6, 30)
    with torch.no_grad():
        y_b = torch.fft.irfft(torch.fft.rfft(u, n=60) * torch.fft.rfft(b.kernel(30), n=60), n=60)[..., :30] \
            + u * b.D.unsqueeze(-1)
        assert torch.allclose(a(u), y_b, atol=1e-5, rtol=1e-4)


def test_export_leaves_the_model_alone_and_is_deterministic(tmp_path):
    torch.manual_seed(3)
    m = SSModel(True)
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    kinds = [type(x).__name__ for x in m.modules()]
    x = torch.randn(2, 20, 3)
    a, b = export(m, x, tmp_path / "a.onnx"), export(m, x, tmp_path / "b.onnx")
    export(m, x, tmp_path / "c.onnx", exporter="torchscript")
    export(m, x, tmp_path / "d.onnx", exporter="torchscript")
    assert (tmp_path / "c.onnx").read_bytes() == (tmp_path / "d.onnx").read_bytes()
    assert m.training and [type(x).__name__ for x in m.modules()] == kinds
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert a.SerializeToString() == b.SerializeToString()
    assert sorted(f.name for f in a.functions) == ["S4D"]


# --- modules that look like S4D but are not ---------------------------------------
class NoC(nn.Module):
    def __init__(self, H=4, n2=2):
        super().__init__()
        self.log_dt = nn.Parameter(torch.zeros(H))
        self.log_A_real = nn.Parameter(torch.zeros(H, n2))
        self.A_imag = nn.Parameter(torch.zeros(H, n2))

    def forward(self, u):
        return u


class Holder(nn.Module):
    def __init__(self, kernel, with_d=True):
        super().__init__()
        if with_d:
            self.D = nn.Parameter(torch.ones(4))
        self.kernel = kernel

    def forward(self, x):
        return x


class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.block = inner

    def forward(self, x):
        return self.block(x)


def test_unknown_exporter_is_refused():
    with pytest.raises(ExportError) as e:
        export(NS4DModel(), torch.randn(1, 5, 1), exporter="jit")
    assert str(e.value) == "exporter 'jit' is not one of dynamo, torchscript"


def test_half_s4d_module_is_named_with_what_is_missing():
    with pytest.raises(ExportError) as e:
        export(Wrapper(Holder(NoC())), torch.randn(1, 5, 4))
    assert str(e.value) == ("module 'block.kernel' (NoC) looks like an S4D layer (has log_dt, log_A_real, "
                            "A_imag) but has no C")
    with pytest.raises(ExportError) as e:
        k = S4DKernel(4, 4)
        export(Wrapper(Holder(k, with_d=False)), torch.randn(1, 5, 4))
    assert str(e.value) == ("module 'block.kernel' (S4DKernel) looks like an S4D layer (has log_dt, "
                            "log_A_real, A_imag, C) but has no D (here or in its parent)")


def test_wrong_parameter_shape_is_named():
    k = S4DKernel(4, 4)
    k.C = nn.Parameter(torch.randn(4, 2))  # real, not a real view of complex
    with pytest.raises(ExportError) as e:
        export(Wrapper(Holder(k)), torch.randn(1, 5, 4))
    assert str(e.value) == ("module 'block.kernel' (S4DKernel): C has shape (4, 2), expected (4, 2, 2) "
                            "(complex C as a real view; channels first if more than one)")
    k = S4DKernel(4, 4)
    k.A_imag = nn.Parameter(torch.zeros(4, 3))
    with pytest.raises(ExportError) as e:
        export(Wrapper(Holder(k)), torch.randn(1, 5, 4))
    assert str(e.value) == "module 'block.kernel' (S4DKernel): A_imag has shape (4, 3), expected (4, 2)"


class Bilinear(S4D):
    """S4D-shaped, but its forward discretizes with the bilinear rule, which
    the parameters' canonical (ZOH) meaning does not describe."""

    def forward(self, u, **kwargs):
        L = u.size(-1)
        dt = torch.exp(self.kernel.log_dt)[:, None]
        A = -torch.exp(self.kernel.log_A_real) + 1j * self.kernel.A_imag
        lam = (1 + dt * A / 2) / (1 - dt * A / 2)
        C = torch.view_as_complex(self.kernel.C) * dt / (1 - dt * A / 2)
        k = 2 * torch.einsum("hn,hnl->hl", C, lam.unsqueeze(-1) ** torch.arange(L)).real
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
        return self.output_linear(self.activation(y + u * self.D.unsqueeze(-1))), None


def test_module_whose_forward_is_not_the_s4d_equations_is_refused():
    torch.manual_seed(4)
    m = SSModel(True, layers=1, layer=Bilinear)
    with pytest.raises(ExportError) as e:
        export(m, torch.randn(1, 30, 3))
    assert str(e.value) == ("module 'layers.0' (Bilinear): no value in its forward equals causal_conv(u, K) "
                            "+ D u for the kernel K its parameters define (ZOH, published S4D equations); "
                            "cannot export it exactly")


def test_fft_convolution_gradients_are_exact():
    from s4dc.torch import causal_conv

    g = torch.Generator().manual_seed(5)
    u = torch.randn(2, 3, 11, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(3, 11, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(causal_conv, (u, k))
    direct = torch.stack([sum(k[:, j] * u[:, :, t - j] for j in range(t + 1)) for t in range(11)], dim=-1)
    assert torch.allclose(causal_conv(u, k), direct, atol=1e-12)


# --- external data: torch's dynamo exporter writes initializers >= 1 KiB to FILE.onnx.data ----
class ConvForm(nn.Module):
    """An S4D layer as users export it today: the kernel materialized for the
    length and applied as a causal depthwise convolution (docs/onnx_forms.md)."""

    def __init__(self, H: int = 8, T: int = 64):
        super().__init__()
        self.enc, self.dec, self.ssm = nn.Linear(2, H), nn.Linear(H, 3), NS4D(H, 8, activation=False)
        self.register_buffer("K", self.ssm.kernel(T).detach().flip(-1)[:, None].clone())

    def forward(self, x):
        u = self.enc(x).transpose(1, 2)
        y = nn.functional.conv1d(nn.functional.pad(u, (self.K.shape[-1] - 1, 0)), self.K, groups=u.shape[1])
        return self.dec(torch.relu(y + u * self.ssm.D[:, None]).transpose(1, 2))


def _dynamo_default(tmp_path):
    torch.manual_seed(6)
    m = ConvForm().eval()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    with torch.no_grad():
        torch.onnx.export(m, (torch.randn(1, 64, 2),), str(model_dir / "dynamo.onnx"), dynamo=True)
    assert (model_dir / "dynamo.onnx.data").is_file()  # the case this tests: data outside the model file
    return m, model_dir / "dynamo.onnx"


def test_default_dynamo_export_compiles_from_another_folder(tmp_path, monkeypatch, rng):
    m, path = _dynamo_default(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    net = s4dc.compile(str(path), float_only=True)
    x = rng.standard_normal((2, 64, 2)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    assert np.abs(net.run(x) - want).max() <= 1e-3 * np.abs(want).max()  # the kernel fit's tolerance


def test_external_data_of_bytes_needs_a_base_folder_and_stays_inside_it(tmp_path):
    import onnx
    from s4dc.errors import ModelLoadError
    from s4dc.frontend.onnx_prep import read_model

    _, path = _dynamo_default(tmp_path)
    data = path.read_bytes()
    with pytest.raises(ModelLoadError) as e:
        read_model(data)
    assert str(e.value).startswith("<bytes>: tensor '")
    assert str(e.value).endswith("' has its data in an external file 'dynamo.onnx.data'; pass base_dir (the "
                                 "folder that holds it) or the model's path")
    model, _, _ = read_model(data, base_dir=path.parent)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
    assert read_model(data, base_dir=path.parent)[1] == read_model(str(path))[1]
    proto = onnx.load(str(path), load_external_data=False)
    t = next(t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    for e_ in t.external_data:
        if e_.key == "location":
            e_.value = "../dynamo.onnx.data"
    (tmp_path / "dynamo.onnx.data").write_bytes((path.parent / "dynamo.onnx.data").read_bytes())
    with pytest.raises(ModelLoadError) as e:
        read_model(proto, base_dir=path.parent)
    assert str(e.value) == (f"{proto.graph.name}: tensor '{t.name}': external data location "
                            f"'../dynamo.onnx.data' is not a file inside the model's folder {path.parent.resolve()}")


# --- the export's own errors: torch modules named, torch's cause quoted, no raw torch exception ---------
class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 3)

    def forward(self, x):
        return nn.functional.gelu(self.lin(x))


class _Net(nn.Module):
    def __init__(self, head=None, weight_norm=False, non_leaf_buffer=False, branch=False):
        super().__init__()
        self.enc, self.ssm = nn.Linear(2, 8), NS4D(8, 8)
        self.head = head or (nn.utils.parametrizations.weight_norm(nn.Linear(8, 3)) if weight_norm
                             else nn.Linear(8, 3))
        if weight_norm:  # the old hook-based weight_norm too: its weight is a non-leaf tensor
            self.enc = nn.utils.weight_norm(self.enc)
        self.branch, self.non_leaf = branch, non_leaf_buffer
        if non_leaf_buffer:
            self.register_buffer("scale", self.enc.weight.sum() * 0 + 2.0)  # requires grad: not a leaf

    def forward(self, x):
        z = self.ssm(self.enc(x))
        if self.branch and z.sum() > 0:  # data-dependent control flow: torch.export refuses it
            z = z * 2
        return self.head(z * self.scale if self.non_leaf else z)


def test_refused_op_names_the_torch_module(tmp_path):
    import re

    torch.manual_seed(7)
    export(_Net(head=_Head()), torch.randn(2, 20, 2), tmp_path / "m.onnx")
    with pytest.raises(s4dc.errors.UnsupportedOpError) as e:
        s4dc.compile(tmp_path / "m.onnx", float_only=True)
    assert re.fullmatch(r"node '\w+' \(Erf\) in torch module 'head' \(_Head\): Loihi 2 S4D needs ReLU "
                        r"activations, as the n-S4D model uses; .*", str(e.value))


@pytest.mark.parametrize("kind", ["weight_norm", "non_leaf_buffer"])
def test_models_that_cannot_be_deep_copied_export(kind, tmp_path, rng):
    torch.manual_seed(8)
    m = _Net(**{kind: True}).eval()
    import copy
    with pytest.raises(RuntimeError):
        copy.deepcopy(m)  # what the export used to do
    export(m, torch.randn(2, 20, 2), tmp_path / "m.onnx")
    net = s4dc.compile(tmp_path / "m.onnx", float_only=True)
    x = rng.standard_normal((3, 20, 2)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    assert np.abs(net.run(x) - want).max() <= BOUND * np.abs(want).max()


def test_torch_exporter_failure_quotes_the_real_cause():
    with pytest.raises(ExportError) as e:
        export(_Net(branch=True), torch.randn(2, 20, 2))
    msg = str(e.value)
    assert msg.startswith("torch's dynamo exporter failed on the model after s4dc's nodes were put in "
                          "(GuardOnDataDependentSymNode: Could not guard on data-dependent expression ")
    assert "\x1b" not in msg and "\n" not in msg


def test_cause_text_strips_colour_codes_and_finds_the_innermost_cause():
    from s4dc.torch.errors import cause_text

    try:
        try:
            raise ValueError("\x1b[1m\x1b[31mUnsupported value kind: Tensor\x1b[0m\nmore lines")
        except ValueError as inner:
            raise RuntimeError("Failed to export the model with torch.export. This is step 1/3") from inner
    except RuntimeError as e:
        assert cause_text(e) == "ValueError: Unsupported value kind: Tensor"


def test_model_failing_on_its_example_is_an_export_error():
    with pytest.raises(ExportError) as e:
        export(_Net(), torch.randn(2, 20, 5))
    assert str(e.value) == ("the model fails on example_input of shape (2, 20, 5) (RuntimeError: mat1 and mat2 "
                            "shapes cannot be multiplied (40x5 and 2x8))")


class _Flip(nn.Module):
    def forward(self, z):
        return z.flip(1)  # reverses time: not a stream


def test_refused_pattern_names_the_torch_module(tmp_path):
    torch.manual_seed(9)
    m = _Net(head=nn.Sequential(_Flip(), nn.Linear(8, 3)))
    export(m, torch.randn(2, 20, 2), tmp_path / "m.onnx")
    with pytest.raises(s4dc.errors.UnsupportedPatternError) as e:
        s4dc.compile(tmp_path / "m.onnx", float_only=True)
    assert str(e.value) == ("node 'node_flip' (Slice) in torch module 'head.0' (_Flip): slices axis 1 (T) to "
                            "19:-1:-1; only the whole axis or the last time step can be selected")


class _OldVersion(nn.Module):
    """A library layer as an older version wrote it: no attribute its adapter reads."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(8))

    def forward(self, z):
        return z * self.w


def test_an_adapter_that_cannot_read_a_layer_names_it():
    from s4dc.torch.adapters import ADAPTERS, class_path, register

    path = class_path(_OldVersion())
    if path not in ADAPTERS:
        register(path, library="test", layer="OldVersion")(lambda name, layer, args: layer.inv_dt)
    m = _Net(head=nn.Sequential(_OldVersion(), nn.Linear(8, 3)))
    with pytest.raises(ExportError) as e:
        export(m, torch.randn(2, 20, 2))
    assert str(e.value) == ("module 'head.0' (_OldVersion): cannot be read as a state space layer (AttributeError: "
                            "'_OldVersion' object has no attribute 'inv_dt')")
