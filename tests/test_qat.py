"""Quantization-aware fine-tuning (s4dc.torch.qat): the module's output is
the compiled network's, bit for bit, before and after fine-tuning, and the
exported grids compile back to the same integers."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import s4dc  # noqa: E402
from s4dc.frontend.canonical import CanonicalModel  # noqa: E402
from s4dc.errors import ExportError, GridError, UnsupportedPatternError  # noqa: E402
from s4dc.torch import NS4D, export  # noqa: E402
from s4dc.torch.qat import QATNetwork  # noqa: E402

T = 32


class Classifier(nn.Module):
    def __init__(self, seq_out: bool = False):
        super().__init__()
        self.seq_out = seq_out
        self.enc = nn.Linear(2, 8)
        self.s1, self.mix, self.s2 = NS4D(8, 16, dt_min=0.05, dt_max=0.3), nn.Linear(8, 8), NS4D(8, 8)
        self.dec = nn.Linear(8, 3)

    def forward(self, x):
        z = self.s2(self.mix(self.s1(self.enc(x)))) + self.enc(x)  # residual: a qadd on the chip
        return self.dec(z if self.seq_out else z.mean(dim=1))


def _compiled(tmp_path, seq_out=False, bits=4, seed=0):
    torch.manual_seed(seed)
    path = tmp_path / "float.onnx"
    export(Classifier(seq_out), torch.randn(2, T, 2), path)
    cfg = tmp_path / "precision.json"
    cfg.write_text(json.dumps({"Model": {"weight": bits}}))
    calib = np.random.default_rng(seed).standard_normal((32, T, 2)).astype(np.float32)
    return s4dc.compile(path, calibration=calib, config=str(cfg), place=False), calib, str(cfg)


def _finetune(qat, x, y, steps=6, lr=0.6, seq_out=False):
    opt = torch.optim.Adam(qat.parameters(), lr=lr)
    for _ in range(steps):
        out = qat(torch.from_numpy(x))
        loss = ((out - torch.from_numpy(y)) ** 2).mean() if seq_out else \
            nn.functional.cross_entropy(out, torch.from_numpy(y).long())
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("seq_out", [False, True])
def test_finetuned_module_compiles_to_its_own_integers(seq_out, tmp_path):
    net, calib, cfg = _compiled(tmp_path, seq_out)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, T, 2)).astype(np.float32)
    y = rng.standard_normal((16, T, 3)).astype(np.float32) if seq_out else rng.integers(0, 3, 16)
    qat = QATNetwork(net)
    with torch.no_grad():
        assert np.array_equal(qat(torch.from_numpy(x)).numpy(), net.run(x))  # starts at the PTQ integers
    before = qat.quantized_graph()
    _finetune(qat, x, y, seq_out=seq_out)
    after = qat.quantized_graph()
    changed = sum(int(np.count_nonzero(a.params[k] != b.params[k]))
                  for a, b in zip(before.layers, after.layers) for k in a.params
                  if a.op in ("qaffine", "qssm") and k in ("weight", "d", "b_re", "c_re", "a_re"))
    assert changed > 10  # the fine-tuning moved integers

    proto = qat.export(tmp_path / "tuned.onnx")
    ops = {n.op_type for n in proto.graph.node if n.domain == "s4dc"}
    assert ops == {"S4DDiscrete", "Quant"}
    net2 = s4dc.compile(tmp_path / "tuned.onnx", calibration=calib, config=cfg, place=False)
    x2 = rng.standard_normal((9, T, 2)).astype(np.float32) * 1.5
    with torch.no_grad():
        mine = qat(torch.from_numpy(x2)).numpy()
    assert np.array_equal(mine, net2.run(x2))
    assert not np.array_equal(mine, net.run(x2))
    # the same integer network: every layer's dequantized coefficients and exponents
    qa = [l for l in after.layers if l.op.startswith("q")]
    qb = [l for l in net2.graph.layers if l.op.startswith("q")]
    assert [l.op for l in qa] == [l.op for l in qb]
    for la, lb in zip(qa, qb):
        assert after.tensors[la.output].fmt == net2.graph.tensors[lb.output].fmt
        if la.op == "qssm":
            for c, sh in (("b", "b_shift"), ("c", "c_shift")):
                va, vb = ((l.params[c + "_re"] + 1j * l.params[c + "_im"]) * 2.0 ** -l.params[sh].astype(float)
                          for l in (la, lb))
                assert np.array_equal(va, vb)
            assert all(np.array_equal(la.params[k], lb.params[k]) for k in ("a_re", "a_im", "d", "bias_mant"))
            assert la.attrs["state_exp"] == lb.attrs["state_exp"]
        elif la.op == "qaffine":
            assert np.array_equal(la.params["weight"] * 2.0 ** la.attrs["weight_exp"],
                                  lb.params["weight"] * 2.0 ** lb.attrs["weight_exp"])


def test_gradients_reach_every_parameter_kind(tmp_path):
    net, _, _ = _compiled(tmp_path)
    qat = QATNetwork(net)
    x = np.random.default_rng(1).standard_normal((8, T, 2)).astype(np.float32)
    out = qat(torch.from_numpy(x))
    nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])).backward()
    kinds = {}
    for name, p in qat.weights.items():
        kinds.setdefault(name.rsplit("__", 1)[1], []).append(float(p.grad.abs().sum()))
    assert set(kinds) == {"weight", "bias", "lam_re", "lam_im", "B_re", "B_im", "C_re", "C_im", "D"}
    assert all(max(v) > 0 for k, v in kinds.items() if k != "B_im")  # B is real in the ZOH export


def test_qat_needs_a_quantized_network(tmp_path):
    torch.manual_seed(0)
    export(Classifier(), torch.randn(2, T, 2), tmp_path / "f.onnx")
    with pytest.raises(ExportError) as e:
        QATNetwork(s4dc.compile(tmp_path / "f.onnx", float_only=True))
    assert str(e.value) == "QATNetwork needs a quantized network (compile without float_only)"


def _discrete_model(lam: complex, state_exp: int | None, scale: float = 2.0 ** -10) -> onnx.ModelProto:
    m = CanonicalModel(features=1, time=8)
    m.linear(np.ones((2, 1)))
    proto = m.to_onnx()
    g = proto.graph
    from onnx import helper, numpy_helper
    from s4dc.frontend.canonical import function_proto
    vals = {"lam_re": [[lam.real]] * 2, "lam_im": [[lam.imag]] * 2, "B_re": [[0.5]] * 2, "B_im": [[0.0]] * 2,
            "C_re": [[0.25]] * 2, "C_im": [[0.0]] * 2, "D": [0.0] * 2, "bias": [0.0] * 2}
    for k, v in vals.items():
        g.initializer.append(numpy_helper.from_array(np.asarray(v, np.float32), "s_" + k))
    for k, v in (("scale", scale), ("lo", -2.0 ** 23), ("hi", 2.0 ** 23 - 1)):
        g.initializer.append(numpy_helper.from_array(np.asarray(v, np.float32), "q_" + k))
    ident = g.node[-1]
    src = ident.input[0]
    kw = {} if state_exp is None else {"state_exp": state_exp}
    g.node.insert(len(g.node) - 1, helper.make_node("S4DDiscrete", [src] + ["s_" + k for k in vals], ["ssm"],
                                                    name="ssm", domain="s4dc", **kw))
    g.node.insert(len(g.node) - 1, helper.make_node("Quant", ["ssm", "q_scale", "q_lo", "q_hi"], ["ssm_q"],
                                                    name="ssm_q", domain="s4dc"))
    ident.input[0] = "ssm_q"
    proto.functions.extend([function_proto("S4DDiscrete", 18), function_proto("Quant", 18)])
    onnx.checker.check_model(proto)
    return proto


def test_discrete_and_quant_nodes_run_in_onnxruntime_and_compile():
    from conftest import ort_run

    proto = _discrete_model(0.5 + 0.25j, None)
    x = np.random.default_rng(0).standard_normal((3, 8, 1)).astype(np.float32)
    net = s4dc.compile(proto, float_only=True)
    ref = ort_run(proto, x)
    assert np.abs(net.run(x) - ref).max() <= 2.0 ** -10  # onnxruntime applies the Quant grid; s4dc's float path does not
    q = s4dc.compile(proto, place=False)
    assert q.graph.tensors[[l for l in q.graph.layers if l.op == "qssm"][0].output].fmt.exp == -10


def test_on_grid_declaration_is_checked():
    with pytest.raises(GridError) as e:
        s4dc.compile(_discrete_model(0.5 + 0.1j, -20), place=False)
    assert str(e.value) == ("layer 'ssm' (ssm, from ssm): declares its coefficients on the chip's grid "
                            "(state_exp), but its eigenvalues are not multiples of 2^-15 (16-bit A)")
    with pytest.raises(UnsupportedPatternError) as e:
        s4dc.compile(_discrete_model(0.5, None, scale=0.3), float_only=True)
    assert str(e.value) == "node 'ssm_q' (Quant): scale 0.3 is not a power of two"
