"""Quantization-aware fine-tuning against the chip's own integers.

    # w4.json: {"Model": {"weight": 4}}  (precision config, README "Command line")
    net = s4dc.compile("model.onnx", config="w4.json", calibration=x_calib)  # PTQ
    qat = QATNetwork(net)            # torch module whose output is net's, exactly
    ... train qat like any nn.Module (its output is net's output, exactly) ...
    qat.export("tuned.onnx")         # compiles back to qat's integers

A `QATNetwork` mirrors a compiled (quantized) s4dc network layer by layer.
Its trainable parameters are affine weights and biases, and per S4D layer
the eigenvalues lambda, B, C, D and bias, as float64 in units of their grid
step (LSBs; they start at the float values the compile rounded to those
integers), so one learning rate means
the same on a 4-bit weight grid and a 16-bit coefficient grid. The
exponents the compile chose (message, state, per-state B and C, weight,
bias) are frozen; each forward pass rounds the parameters to integers with
the quantizer's own rules (round half up and clip to the layer's bits,
lambda by `quantize_modes`) and

* computes the output by running s4dc's bit-exact simulator on those
  integers, so the value is exactly what the chip computes (rounding,
  floor shifts and saturation of every message and state included);
* differentiates a float surrogate at the same operating point: each layer's
  float function (FFT convolution for S4D) of its exact input with the
  rounded parameters, gradients passed straight through every rounding
  (straight-through estimator).

`export` writes the current integers as ONNX with their grids: weights on
their power-of-two grids, S4D layers as `s4dc.S4DDiscrete` with
`state_exp`, and every message exponent as an `s4dc.Quant` node
(docs/torch.md, "Quantization-aware fine-tuning"). `s4dc.compile` takes those grids as they are, so the
compiled network computes the same integers as the fine-tuned module.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from s4dc.atomic import write_atomic
from s4dc.frontend.canonical import DOMAIN, function_proto
from s4dc.errors import ExportError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.ops import INPUT, OUTPUT, QAFFINE, QSSM
from s4dc.passes.quantize import quantize_modes
from s4dc.targets.fixed_sim import FixedSimulator
from s4dc.targets.loihi2.numerics import BIAS_BITS, qmax, round_to_grid
from s4dc.torch.layers import causal_conv


class _Exact(torch.autograd.Function):
    """Value of `exact`, gradient of `surrogate` (straight through)."""

    @staticmethod
    def forward(ctx, surrogate, exact):  # noqa: D401
        return exact.clone()

    @staticmethod
    def backward(ctx, g):
        return g, None


def _ste(w: torch.Tensor, q: np.ndarray) -> torch.Tensor:
    """w rounded to q (numpy) with w's gradient."""
    return w + (torch.from_numpy(q).to(w.dtype) - w).detach()


class QATNetwork(nn.Module):
    """A compiled network as a trainable torch module (see module doc)."""

    def __init__(self, net) -> None:
        super().__init__()
        g: Graph = net.graph
        if not any(l.op in _NAMES for l in g.layers):
            raise ExportError("QATNetwork needs a quantized network (compile without float_only)")
        self.graph = g.copy()
        self._live: dict[str, np.ndarray] = {}
        self.weights = nn.ParameterDict()
        self._grid: dict[str, tuple[np.ndarray, int, bool]] = {}
        fg = getattr(net, "float_graph", None)
        self._float = {l.name: l.params for l in fg.layers} if fg is not None else {}
        for l in self.graph.layers:
            exp, p, a = self._exp, l.params, l.attrs
            if l.is_(QAFFINE):
                e_out = exp(l.output)
                self._add(l, "weight", p["weight"], 2.0 ** a["weight_exp"], a["bits"]["weight"], False, "weight")
                self._add(l, "bias", p["bias_mant"], 2.0 ** (a["bias_exp"] + e_out), BIAS_BITS, True, "bias")
            elif l.is_(QSSM):
                e_u, e_y, e_x = exp(l.inputs[0]), exp(l.output), a["state_exp"]
                e_b = np.exp2((e_x - p["b_shift"] - e_u).astype(float))  # per state, real units of B
                e_c = np.exp2((e_y - p["c_shift"] - e_x).astype(float))  # per state, real units of 2C
                bits, s = a["bits"], 2.0 ** -a["a_frac"]
                self._live[l.name] = (p["b_re"] != 0) | (p["b_im"] != 0) | (p["c_re"] != 0) | (p["c_im"] != 0)
                for name, v, scale, nb, sym in (
                        ("lam_re", p["a_re"], s, a["a_frac"] + 1, False), ("lam_im", p["a_im"], s, a["a_frac"] + 1, False),
                        ("B_re", p["b_re"], e_b, bits["b"], True), ("B_im", p["b_im"], e_b, bits["b"], True),
                        ("C_re", p["c_re"], e_c, bits["c"], True), ("C_im", p["c_im"], e_c, bits["c"], True),
                        ("D", p["d"], 2.0 ** (e_y - a["d_shift"] - e_u), bits["weight"], False),
                        ("bias", p["bias_mant"], 2.0 ** (a["bias_exp"] + e_y), BIAS_BITS, True)):
                    # B and C were rescaled (balanced) before rounding; D and bias were not
                    self._add(l, name, v, scale, nb, sym, name if name in ("D", "bias") else None)
            elif not (l.opdef.structural or l.op in _SURROGATES):
                raise ExportError(f"{l.where()}: QATNetwork cannot train this layer (only quantized chip "
                                  "layers, ReLU and readouts)")

    def _add(self, l: Layer, name: str, ints: np.ndarray, scale, bits: int, symmetric: bool,
             float_name: str | None = None) -> None:
        """A parameter in units of its grid step (LSBs). It starts at the float
        value the compile rounded (where the compile's float graph is at hand
        and rounding it gives the compiled integer), else at the integer: the
        output is the compiled one either way, and the float start keeps
        where each weight sat inside its grid cell, which fine-tuning needs
        at 4 bits."""
        key = _key(l.name) + "__" + name
        scale = np.broadcast_to(np.asarray(scale, np.float64), np.shape(ints)).copy()
        start = np.asarray(ints, np.float64).copy()
        src = self._float.get(l.name, {}).get(float_name) if float_name else None
        if src is not None and np.shape(src) == np.shape(ints):
            latent = np.asarray(src, np.float64) / scale
            same = round_to_grid(latent, 0, bits, symmetric) == ints
            start = np.where(same, latent, start)
        self.weights[key] = nn.Parameter(torch.from_numpy(start))
        self._grid[key] = (scale, bits, symmetric)

    def _exp(self, tensor: str) -> int:
        return self.graph.tensors[tensor].fmt.exp

    def grid_step(self, key: str) -> np.ndarray:
        """Real value of one unit of parameter `key` (its grid step, per element)."""
        return self._grid[key][0]

    # -- the integers ----------------------------------------------------------------
    def integers(self, layer: str) -> dict[str, np.ndarray]:
        """The quantized parameters of `layer` from the current parameters,
        with the quantizer's rules: round half up and clip to the bits
        (B, C, bias symmetrically, see `round_to_grid`); lambda by `quantize_modes`
        (closest impulse response strictly inside the unit circle)."""
        l = self.graph.layer(layer)
        k = _key(layer) + "__"
        w = {n: self.weights[k + n].detach().cpu().numpy() for n in _NAMES[l.op]}
        q = {n: round_to_grid(w[n], 0, self._grid[k + n][1], self._grid[k + n][2]) for n in w if not n.startswith("lam")}
        if l.is_(QAFFINE):
            return {"weight": q["weight"], "bias_mant": q["bias"]}
        scale, bits, _ = self._grid[k + "lam_re"]
        a_re, a_im = quantize_modes((w["lam_re"] + 1j * w["lam_im"]) * scale, bits)
        out = {"a_re": a_re, "a_im": a_im, "b_re": q["B_re"], "b_im": q["B_im"], "c_re": q["C_re"],
               "c_im": q["C_im"], "d": q["D"], "bias_mant": q["bias"]}
        for n in ("b_re", "b_im", "c_re", "c_im"):  # states the compile found silent stay silent
            out[n][~self._live[layer]] = 0
        return out

    def quantized_graph(self) -> Graph:
        """The compiled graph with the current integers."""
        g = self.graph.copy()
        for l in g.layers:
            if l.op in _NAMES:
                l.params.update(self.integers(l.name))
        return g

    def _dequantized(self, l: Layer, ints: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Parameters in real units on their grids, with the parameters' gradients."""
        k = _key(l.name) + "__"
        src = _INT_OF[l.op]
        return {n: _ste(self.weights[k + n], ints[src[n]].astype(np.float64)) * torch.from_numpy(self._grid[k + n][0])
                for n in _NAMES[l.op]}

    # -- forward ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Exactly the compiled network's output on x (batch, time, features)."""
        q = self.quantized_graph()
        sim = FixedSimulator(q)
        xn = x.detach().cpu().numpy().astype(np.float32)
        if xn.ndim == 2 and q.meta.get("input_rank") == 2:
            xn = xn[:, :, None]
        tr = sim.trace(xn)
        vals: dict[str, torch.Tensor] = {}
        outs = []
        for l in q.layers:
            t = q.tensors[l.output]
            ins = [vals[i] for i in l.inputs]
            exact_np = tr[l.name].astype(np.float64)
            if t.sequence and t.fmt is not None and not l.is_(OUTPUT):
                exact_np = exact_np * 2.0 ** t.fmt.exp  # messages to real units
            if l.is_(INPUT):
                vals[l.output] = torch.from_numpy(exact_np)
                continue
            if l.is_(OUTPUT):
                src = q.producer(l.inputs[0])
                want = sim.decode_output(l, tr[src.name])
                outs.append(_Exact.apply(ins[0].to(torch.float32), torch.from_numpy(np.ascontiguousarray(want))))
                continue
            vals[l.output] = _Exact.apply(self._surrogate(l, ins), torch.from_numpy(exact_np))
        return outs[0] if len(outs) == 1 else outs

    def _surrogate(self, l: Layer, ins: list[torch.Tensor]) -> torch.Tensor:
        y = _SURROGATES[l.op](self, l, ins)
        return torch.relu(y) if l.attrs.get("relu") else y

    # -- export ------------------------------------------------------------------------
    def export(self, path: "str | os.PathLike | None" = None, opset: int = 18) -> onnx.ModelProto:
        """ONNX of the current integers with their grids (see module doc)."""
        proto = _QATWriter(self, opset).write()
        if path is not None:
            write_atomic(path, lambda f: f.write(proto.SerializeToString()))
        return proto


def _surrogate_qaffine(net: QATNetwork, l: Layer, ins: list[torch.Tensor]) -> torch.Tensor:
    p = net._dequantized(l, l.params)  # l is the quantized graph's layer: its params are the current integers
    return ins[0] @ p["weight"].T + p["bias"]


def _surrogate_qssm(net: QATNetwork, l: Layer, ins: list[torch.Tensor]) -> torch.Tensor:
    p = net._dequantized(l, l.params)
    lam = torch.complex(p["lam_re"], p["lam_im"])
    # silent padding modes have lambda = 0: lambda^l by exp(l log lambda) needs lambda != 0
    lam = torch.where(lam.abs() > 0, lam, torch.full_like(lam, 1e-300))
    cb = torch.complex(p["C_re"], p["C_im"]) * torch.complex(p["B_re"], p["B_im"])
    T = ins[0].shape[1]
    ell = torch.arange(T, dtype=torch.float64)
    k = (cb[..., None] * torch.exp(torch.log(lam)[..., None] * ell)).real.sum(dim=1)  # (H, T)
    return causal_conv(ins[0].transpose(1, 2), k).transpose(1, 2) + ins[0] * p["D"] + p["bias"]


# Op -> the float surrogate the backward pass differentiates (the forward
# takes the simulator's exact integers).
_SURROGATES = {
    "qaffine": _surrogate_qaffine,
    "qssm": _surrogate_qssm,
    "qadd": lambda net, l, ins: ins[0] + ins[1],
    "relu": lambda net, l, ins: torch.relu(ins[0]),
    "readout": lambda net, l, ins: ins[0][:, -1, :] if l.attrs["mode"] == "last" else ins[0].mean(dim=1),
}
# Trainable ops: their parameters (in grid units) and the integer each becomes.
_NAMES = {"qaffine": ("weight", "bias"),
          "qssm": ("lam_re", "lam_im", "B_re", "B_im", "C_re", "C_im", "D", "bias")}
_INT_OF = {"qaffine": {"weight": "weight", "bias": "bias_mant"},
           "qssm": {"lam_re": "a_re", "lam_im": "a_im", "B_re": "b_re", "B_im": "b_im", "C_re": "c_re",
                    "C_im": "c_im", "D": "d", "bias": "bias_mant"}}


def _key(layer: str) -> str:
    return layer.replace(".", "_")


def _write_qaffine(w: "_QATWriter", l: Layer, n: str, ins: list[str]) -> str:
    a, p = l.attrs, l.params
    wt = w._const(n + "_W", (p["weight"] * 2.0 ** a["weight_exp"]).T)
    b = w._const(n + "_b", p["bias_mant"] * 2.0 ** (a["bias_exp"] + w.qat._exp(l.output)))
    out = w._node("Add", [w._node("MatMul", [ins[0], wt], n + "_mm"), b], n)
    return w._quant(w._node("Relu", [out], n + "_relu") if a["relu"] else out, l.output)


def _write_readout(w: "_QATWriter", l: Layer, n: str, ins: list[str]) -> str:
    if l.attrs["mode"] == "mean":
        return w._node("ReduceMean", [ins[0], w._axes(n)], n, keepdims=0)
    idx = n + "_idx"
    w.inits.append(numpy_helper.from_array(np.array(-1, np.int64), idx))
    return w._node("Gather", [ins[0], idx], n, axis=1)


# Op -> how the exporter writes one layer (returns the ONNX value holding its output).
_WRITERS = {
    "input": lambda w, l, n, ins: w._quant("x", l.output),
    "qaffine": _write_qaffine,
    "qssm": lambda w, l, n, ins: w._quant(w._ssm(l, n, ins[0]), l.output),
    "qadd": lambda w, l, n, ins: w._quant(w._node("Add", ins, n), l.output),
    "relu": lambda w, l, n, ins: w._node("Relu", ins, n),
    "readout": _write_readout,
}


class _QATWriter:
    """The ONNX graph of a QATNetwork's current integers."""

    def __init__(self, qat: QATNetwork, opset: int) -> None:
        self.qat, self.opset = qat, opset
        self.g = qat.quantized_graph()
        self.nodes: list = []
        self.inits: list = []
        self.names: dict[str, str] = {}
        self.ops: set[str] = set()

    def _const(self, name: str, v) -> str:
        arr = np.asarray(v, np.float32)
        if not np.array_equal(arr.astype(np.float64), np.asarray(v, np.float64)):
            raise ExportError(f"value '{name}' is not exact in float32")  # grids are; guard anyway
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def _node(self, op: str, ins: list[str], out: str, domain: str = "", **attrs) -> str:
        self.nodes.append(helper.make_node(op, ins, [out], name=out, domain=domain, **attrs))
        if domain == DOMAIN:
            self.ops.add(op)
        return out

    def _quant(self, src: str, tensor: str) -> str:
        fmt = self.g.tensors[tensor].fmt
        m = float(qmax(fmt.bits))
        c = [self._const(f"{tensor}_q_{k}", v) for k, v in (("scale", 2.0 ** fmt.exp), ("lo", -m - 1), ("hi", m))]
        return self._node("Quant", [src] + c, f"{tensor}_q", DOMAIN)

    def write(self) -> onnx.ModelProto:
        g = self.g
        outputs = []
        for l in g.layers:
            n, ins = _key(l.name), [self.names.get(i) for i in l.inputs]
            if l.is_(OUTPUT):
                seq = g.tensors[l.output].sequence
                if list(l.attrs["layout"]) != (["B", "T", "F"] if seq else ["B", "F"]):
                    raise ExportError(f"{l.where()}: QAT export writes (batch, [time,] features) outputs only")
                name = "y" if len(g.output_layers) == 1 else f"y{len(outputs)}"
                self._node("Identity", ins, name)
                outputs.append((name, g.tensors[l.output]))
                continue
            write = _WRITERS.get(l.op)
            if write is None:
                raise ExportError(f"{l.where()}: QAT export cannot write op '{l.op}'")
            out = write(self, l, n, ins)
            self.names[l.output] = out
        f = TensorProto.FLOAT
        inp = g.input_layer
        T = g.meta.get("time_steps")
        x = helper.make_tensor_value_info("x", f, ["batch", T or "time", inp.attrs["features"]])
        ys = [helper.make_tensor_value_info(nm, f, ["batch", T or "time", t.features] if t.sequence
                                            else ["batch", t.features]) for nm, t in outputs]
        graph = helper.make_graph(self.nodes, "s4dc_qat", [x], ys, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset),
                                                        helper.make_opsetid(DOMAIN, 1)],
                                  functions=[function_proto(op, self.opset) for op in sorted(self.ops)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    def _axes(self, n: str) -> str:
        self.inits.append(numpy_helper.from_array(np.array([1], np.int64), n + "_axes"))
        return n + "_axes"

    def _ssm(self, l: Layer, n: str, u: str) -> str:
        a, p = l.attrs, l.params
        e_u, e_y, e_x = self.qat._exp(l.inputs[0]), self.qat._exp(l.output), a["state_exp"]
        e_b = np.exp2((e_x - p["b_shift"] - e_u).astype(float))
        e_c = np.exp2((e_y - p["c_shift"] - e_x).astype(float)) / 2  # the function doubles C
        s = 2.0 ** -a["a_frac"]
        vals = {"lam_re": p["a_re"] * s, "lam_im": p["a_im"] * s, "B_re": p["b_re"] * e_b, "B_im": p["b_im"] * e_b,
                "C_re": p["c_re"] * e_c, "C_im": p["c_im"] * e_c, "D": p["d"] * 2.0 ** (e_y - a["d_shift"] - e_u),
                "bias": p["bias_mant"] * 2.0 ** (a["bias_exp"] + e_y)}
        ins = [u] + [self._const(f"{n}_{k}", v) for k, v in vals.items()]
        out = self._node("S4DDiscrete", ins, n, DOMAIN, state_exp=int(e_x))
        return self._node("Relu", [out], n + "_relu") if a["relu"] else out
