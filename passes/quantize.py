"""Quantize: post-training quantization to Loihi 2 integer arithmetic.

From a float graph (diagonal, discrete, folded ssm layers) and calibration
inputs, build the integer graph that targets/fixed_sim.py runs bit-exactly
(semantics: docs/fixed_point.md):

1. calibrate: run the float executor, record every tensor's and every S4D
   state's peak magnitude;
2. balance: rescale each S4D state (B *= g, C /= g) so every state peaks at
   the same value and uses the full state register;
3. choose exponents: messages and states from the observed peaks times a
   headroom margin; 8-bit (configurable) synapse weights by least squared
   rounding error over a few exponents; per-state exponents for the 16-bit
   S4D coefficients B and C;
4. quantize A per mode: among the roundings of Re and Im (floor/ceil), the
   one strictly inside the unit circle whose impulse response lam^l is
   closest to the float mode's (not each coefficient on its own);
5. try several headroom margins and keep the one whose simulated output is
   closest to the float graph's on the calibration set.

ReLUs that follow an affine or ssm layer are fused into it (sigma-delta
neurons in ReLU mode). Layers after a time readout stay float (the host
decodes them); `sink_readout` moves affines in front of readouts first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from s4dc.errors import GridError, S4dcError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.ops import INPUT, QADD, QAFFINE, QSSM, RELU
from s4dc.ir.tensor import FixedPoint
from s4dc.passes.base import PassContext, PassPreconditionError, register
from s4dc.precision import widths_for
from s4dc.registry import Registry
from s4dc.targets.float_exec import FloatExecutor
from s4dc.targets.loihi2.numerics import (BIAS_BITS, MAX_EXACT_B_SHIFT, MAX_SHIFT, MESSAGE_BITS, MIN_SHIFT,
                                         BitWidths, qmax, round_half_up, round_to_grid)

MARGINS = (1.25, 2.0, 4.0)  # headroom over the calibrated peak, tried in turn
EVAL_SAMPLES = 32           # calibration samples used to compare margins


def _exp_for(peak: float, bits: int, margin: float = 1.0) -> int:
    """Smallest exponent e with peak * margin <= qmax(bits) * 2^e."""
    if peak <= 0:
        return -(bits - 1)
    return int(math.ceil(math.log2(peak * margin / qmax(bits))))


def _quant(v: np.ndarray, e: int, bits: int) -> np.ndarray:
    return round_to_grid(v, e, bits)


def _weight_exp(w: np.ndarray, bits: int) -> int:
    """Exponent minimizing the squared rounding-and-clipping error of w."""
    e0 = _exp_for(float(np.abs(w).max(initial=0.0)), bits)
    return min(range(e0 - 2, e0 + 1), key=lambda e: (float(((_quant(w, e, bits) * 2.0**e - w) ** 2).sum()), -e))


def settle_shift(shift: int | np.ndarray, *weights: np.ndarray) -> int | np.ndarray:
    """The right shift of a synapse sum, kept in [MIN_SHIFT, MAX_SHIFT] where
    that changes nothing: weights (integer arrays, zeroed in place) whose
    shift would pass MAX_SHIFT sit below the output's resolution (a sum of
    8-bit weights times 24-bit messages over up to 1024 inputs, or of 16-bit
    S4D coefficients times a state, is under 2^40, so shifted past 40 bits it
    is 0 or -1: one output step at most), and a shift over zero weights may
    be any. A scalar shift covers all the weights; an array one is per
    element, the weights of its shape. What remains out of range (weights
    too large for the output) the verifier refuses."""
    s = np.asarray(shift)
    over = s > MAX_SHIFT
    if s.ndim == 0:
        if over:
            for w in weights:
                w[...] = 0
        if not any(w.any() for w in weights):
            return int(np.clip(s, MIN_SHIFT, MAX_SHIFT))
        return int(s)
    for w in weights:
        w[over] = 0
    zero = np.logical_and.reduce([w == 0 for w in weights])
    return np.where(zero, np.clip(s, MIN_SHIFT, MAX_SHIFT), s)


def _bias(b: np.ndarray, e_out: int) -> tuple[np.ndarray, int]:
    """Bias in output units as a 16-bit mantissa and a left shift."""
    b_int = round_half_up(b * 2.0**-e_out)
    need = float(np.abs(b_int).max(initial=0.0))
    be = max(0, _exp_for(need, BIAS_BITS))
    return round_to_grid(b_int, be, BIAS_BITS), be


def quantize_modes(lam: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer (re, im) for each eigenvalue, |q| < 1, impulse response closest.

    For modes lam and q, sum_l |lam^l - q^l|^2 =
    1/(1-|lam|^2) + 1/(1-|q|^2) - 2 Re(1/(1 - lam conj(q))).
    """
    fa = bits - 1
    s = 2.0**fa
    best_re = np.zeros(lam.shape, np.int64)
    best_im = np.zeros(lam.shape, np.int64)
    best_err = np.full(lam.shape, np.inf)
    fr, fi = np.floor(lam.real * s), np.floor(lam.imag * s)
    for dr in (0, 1, -1, 2):
        for di in (0, 1, -1, 2):
            qr, qi = fr + dr, fi + di
            q = (qr + 1j * qi) / s
            ok = (np.abs(q) < 1) & (np.abs(qr) <= qmax(bits)) & (np.abs(qi) <= qmax(bits))
            with np.errstate(divide="ignore", invalid="ignore"):
                err = (1 / (1 - np.abs(lam) ** 2) + 1 / (1 - np.abs(q) ** 2)
                       - 2 * np.real(1 / (1 - lam * np.conj(q))))
            err = np.where(ok, np.maximum(err, 0.0), np.inf)
            take = err < best_err
            best_re = np.where(take, qr, best_re).astype(np.int64)
            best_im = np.where(take, qi, best_im).astype(np.int64)
            best_err = np.where(take, err, best_err)
    return best_re, best_im


def _fusable_relu(g: Graph, l: Layer) -> Layer | None:
    readers = g.consumers(l.output)
    return readers[0] if len(readers) == 1 and readers[0].is_(RELU) else None


@dataclass
class Site:
    """What a quantization rule gets for one layer: its widths, the chosen
    output exponent (from the calibrated peak and margin, or a trained
    grid), the exponents of its inputs, and the calibration statistics."""

    bw: BitWidths
    e_out: int
    e_ins: list[int]
    relu: bool              # a following ReLU is fused into this layer
    preset: int | None      # the output exponent quantization-aware training fixed
    margin: float
    peaks: dict[str, float]
    states: dict[str, np.ndarray]


# Float op -> the rule that rewrites one layer of it in place as its integer
# op; returns the output tensor's exponent.
QuantRule = Callable[[Layer, Site], int]
RULES: Registry[QuantRule] = Registry("quantization rule")


@RULES.register("relu")
def _q_relu(l: Layer, s: Site) -> int:
    return s.e_ins[0]  # a ReLU alone keeps its input's grid


@RULES.register("affine")
def _q_affine(l: Layer, s: Site) -> int:
    bw, w = s.bw, l.params["weight"]
    qat = l.attrs.get("qat") or {}
    if qat.get("weight_exp") is not None and qat["weight_bits"] <= bw.weight:
        e_w = qat["weight_exp"]  # the trained grid: integers reproduced exactly
    else:
        e_w = _weight_exp(w, bw.weight)
    bm, be = _bias(l.params["bias"], s.e_out)
    l.op = QAFFINE.name
    l.params = {"weight": _quant(w, e_w, bw.weight), "bias_mant": bm}
    l.attrs = {"shift": s.e_out - e_w - s.e_ins[0], "bias_exp": be, "weight_exp": e_w,
               "relu": s.relu, "bits": bw.to_json()}
    return s.e_out


@RULES.register("ssm")
def _q_ssm(l: Layer, s: Site) -> int:
    return _ssm(l, s.e_ins[0], s.peaks, s.states[l.name], s.bw, s.margin, s.relu, s.preset)


@RULES.register("mimo")
def _q_mimo(l: Layer, s: Site) -> int:
    from s4dc.passes.quantize_mimo import quantize_mimo

    return quantize_mimo(l, s.e_ins[0], s.peaks[l.output], s.states[l.name], s.bw, s.margin, s.relu, s.preset)


@RULES.register("add")
def _q_add(l: Layer, s: Site) -> int:
    l.op = QADD.name
    l.attrs = {"shift_a": s.e_out - s.e_ins[0], "shift_b": s.e_out - s.e_ins[1], "bits": s.bw.to_json()}
    return s.e_out


def build(graph: Graph, peaks: dict[str, float], states: dict[str, np.ndarray],
          widths: dict[str, BitWidths], margin: float) -> Graph:
    """The quantized graph for one headroom margin."""
    g = graph.copy()
    on_chip = {l.name for l in g.layers if g.tensors[l.output].sequence}
    exps: dict[str, int] = {}
    inp = g.input_layer
    exps[inp.output] = _preset(g, inp.output) if _preset(g, inp.output) is not None else \
        _exp_for(peaks[inp.output], MESSAGE_BITS, margin)
    inp.attrs["exp"] = exps[inp.output]
    for l in list(g.layers):
        if l.name not in on_chip or l.opdef.structural:
            continue
        rule = RULES.get(l.op)
        if rule is None:
            raise S4dcError(f"{l.where()}: cannot quantize op '{l.op}'")
        bw = widths.get(l.name, widths["__default__"])
        relu = _fusable_relu(g, l) if l.opdef.fuses_relu else None
        e_out = _exp_for(peaks[l.output], bw.message, margin)
        preset = _preset(g, relu.output) if relu is not None else None
        preset = _preset(g, l.output) if preset is None else preset
        if preset is not None:  # a QDQ grid from quantization-aware training
            e_out = preset
        e_out = rule(l, Site(bw, e_out, [exps[i] for i in l.inputs], relu is not None, preset, margin,
                             peaks, states))
        exps[l.output] = e_out
        if relu is not None:  # the neuron applies the ReLU; drop the separate layer
            g.rewire(relu.output, l.output)
            g.remove(relu)
    for name, e in exps.items():
        if name in g.tensors:
            g.tensors[name].fmt = FixedPoint(MESSAGE_BITS, e)
    return g


def _preset(g: Graph, tensor: str) -> int | None:
    """Exponent a QDQ pair fixed for `tensor` in the float graph, if any."""
    t = g.tensors.get(tensor)
    return t.fmt.exp if t is not None and t.fmt is not None else None


def _ssm(l: Layer, e_u: int, peaks: dict[str, float], state_peak: np.ndarray, bw: BitWidths,
         margin: float, relu: bool, preset: int | None = None) -> int:
    p = l.params
    A, B, C, D = p["A"], p["B"].copy(), p["C"] * 2.0, p["D"]  # C carries the folding gain
    qat = l.attrs.get("qat")
    if qat is not None:  # trained on the chip's grids: take them as they are
        live = np.ones(A.shape, bool)
        e_x = int(qat["state_exp"])
        a_re, a_im = _on_grid_modes(l, A, bw.a)
    else:
        # Balance: every live state peaks at 1.
        live = state_peak > 0
        gscale = np.where(live, 1.0 / np.where(live, state_peak, 1.0), 1.0)
        B, C = B * gscale, C / gscale
        e_x = _exp_for(1.0, bw.state, margin)
        a_re, a_im = quantize_modes(A, bw.a)
    # Output scale: the layer output and every per-state message must fit.
    per_state = float((np.maximum(np.abs(C.real), np.abs(C.imag)) * 2).max(initial=0.0))
    e_y = max(_exp_for(peaks[l.output], bw.message, margin), _exp_for(per_state, bw.message, 1.0))
    if preset is not None:
        e_y = preset

    def coef(z: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        peak = np.maximum(np.abs(z.real), np.abs(z.imag))
        e = np.array([[_exp_for(float(v), bits) for v in row] for row in peak], np.int64).reshape(z.shape)
        return round_to_grid(z.real, e, bits), round_to_grid(z.imag, e, bits), e

    b_re, b_im, e_b = coef(B, bw.b)
    b_shift = e_x - e_b - e_u
    over = b_shift > MAX_EXACT_B_SHIFT  # keep the update exact in float64: coarser B instead
    if over.any():
        e_b = np.where(over, e_b + (b_shift - MAX_EXACT_B_SHIFT), e_b)
        b_re, b_im = round_to_grid(B.real, e_b, bw.b), round_to_grid(B.imag, e_b, bw.b)
        b_shift = e_x - e_b - e_u
    c_re, c_im, e_c = coef(C, bw.c)
    dead = ~live  # silent states: no input, no output
    for arr in (b_re, b_im, c_re, c_im):
        arr[dead] = 0
    c_shift = settle_shift(e_y - e_c - e_x, c_re, c_im)
    e_d = _weight_exp(D, bw.weight)
    d = _quant(D, e_d, bw.weight)
    d_shift = settle_shift(e_y - e_d - e_u, d)
    bm, be = _bias(p["bias"], e_y)
    l.op = QSSM.name
    l.params = {"a_re": a_re, "a_im": a_im, "b_re": b_re, "b_im": b_im, "c_re": c_re, "c_im": c_im,
                "b_shift": b_shift.astype(np.int64), "c_shift": np.asarray(c_shift).astype(np.int64),
                "d": d, "bias_mant": bm}
    l.attrs = {"a_frac": bw.a - 1, "d_shift": d_shift, "bias_exp": be, "state_exp": e_x,
               "d_exp": e_d, "relu": relu, "bits": bw.to_json()}
    return e_y


def _on_grid_modes(l: Layer, lam: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """A layer trained on the chip's grid: its eigenvalues are exact multiples
    of 2^-(bits-1) inside the unit circle, used as they are."""
    s = 2.0 ** (bits - 1)
    re, im = lam.real * s, lam.imag * s
    if np.any(re != np.round(re)) or np.any(im != np.round(im)):
        raise GridError(f"{l.where()}: declares its coefficients on the chip's grid (state_exp), but its "
                        f"eigenvalues are not multiples of 2^-{bits - 1} ({bits}-bit A)")
    q = (np.round(re) + 1j * np.round(im)) / s
    if np.any(np.abs(q) >= 1) or np.abs(re).max(initial=0) > qmax(bits) or np.abs(im).max(initial=0) > qmax(bits):
        raise GridError(f"{l.where()}: an eigenvalue on the {bits}-bit grid is not strictly inside the unit circle")
    return np.round(re).astype(np.int64), np.round(im).astype(np.int64)


def calibrate(graph: Graph, x: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray], dict]:
    states: dict[str, np.ndarray] = {}
    tr = FloatExecutor(graph).trace(x, state_absmax=states)
    peaks = {graph.layer(name).output: float(np.abs(v).max(initial=0.0)) for name, v in tr.items()}
    return peaks, states, tr


@register("quantize", requires=("float", "realized", "diagonal", "discrete", "folded", "mimo_realized",
                                "mimo_diagonal", "mimo_discrete"))
def apply(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    from s4dc.targets.fixed_sim import FixedSimulator

    if ctx.calibration_x is None:
        raise PassPreconditionError("pass 'quantize' needs calibration inputs in its context")
    ctx.progress(f"quantizing on {ctx.calibration_note or 'the given calibration inputs'}")
    x = ctx.calibration_x
    widths: dict[str, BitWidths] = ctx.precision if ctx.precision is not None else \
        widths_for(graph, ctx.config or {}, ctx.options.config or "precision config")
    for name, bw in widths.items():
        bw.check("precision config" + ("" if name == "__default__" else f", layer '{name}'"))
    peaks, states, tr = calibrate(graph, x)
    xe = x[:EVAL_SAMPLES]
    ref = np.concatenate([tr[l.name][:EVAL_SAMPLES].ravel() for l in graph.output_layers])
    best = None
    for margin in MARGINS:
        q = build(graph, peaks, states, widths, margin)
        got = np.concatenate([_decoded(q, FixedSimulator(q).trace(xe), l) for l in q.output_layers])
        err = float(np.sqrt(np.mean((got - ref) ** 2)) / max(np.sqrt(np.mean(ref**2)), 1e-30))
        if best is None or err < best[0] - 1e-12:
            best = (err, margin, q)
    err, margin, q = best
    return q, {"margin": margin, "output_rel_rms_error": float(f"{err:.3e}"),
               "layers": report(graph, q, x, tr)}


def _decoded(q: Graph, sim_trace: dict[str, np.ndarray], out: Layer) -> np.ndarray:
    src = q.producer(out.inputs[0])
    v = sim_trace[src.name].astype(np.float64)
    t = q.tensors[src.output]
    return (v * 2.0**t.fmt.exp if t.sequence and t.fmt is not None else v).ravel()


# Integer op -> what the quantization report says of one layer beyond bits,
# exponent and saturations.
REPORT_FIELDS: Registry[Callable[[Layer], dict[str, Any]]] = Registry("quantization report fields")
REPORT_FIELDS.add("qaffine", lambda l: {"weight_exp": l.attrs["weight_exp"], "shift": l.attrs["shift"]})
REPORT_FIELDS.add("qmimo", lambda l: {
    "state_exp": l.attrs["state_exp"], "a_frac": l.attrs["a_frac"], "modes": int(l.params["a_re"].shape[0]),
    "max_abs_eigenvalue": float(f"{np.abs(l.params['a_re'] + 1j * l.params['a_im']).max(initial=0.0) / 2.0**l.attrs['a_frac']:.6f}")})
REPORT_FIELDS.add("qssm", lambda l: {
    "state_exp": l.attrs["state_exp"], "a_frac": l.attrs["a_frac"],
    "max_abs_eigenvalue": float(f"{np.abs(l.params['a_re'] + 1j * l.params['a_im']).max(initial=0.0) / 2.0**l.attrs['a_frac']:.6f}")})


def report(graph: Graph, q: Graph, x: np.ndarray, ft: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per quantized layer: bits, exponents, saturations on the calibration
    set, and relative RMS error of its dequantized output against float
    (`ft`: the float trace of the same inputs)."""
    from s4dc.targets.fixed_sim import FixedSimulator

    sim = FixedSimulator(q)
    qt = sim.trace(x)
    out: dict[str, Any] = {}
    for l in q.layers:
        if not (l.opdef.quantized or l.is_(INPUT)):
            continue
        t = q.tensors[l.output]
        got = qt[l.name].astype(np.float64) * 2.0**t.fmt.exp
        # the float layer with the same output (after a fused ReLU: apply it)
        ref = ft[l.name] if l.name in ft else None
        if ref is not None and l.attrs.get("relu"):
            ref = np.maximum(ref, 0.0)
        entry = {"op": l.op, "exp_out": t.fmt.exp, "saturations": sim.saturations[l.name]}
        if not l.is_(INPUT):
            entry["bits"] = l.attrs["bits"]
        extra = REPORT_FIELDS.get(l.op)
        if extra is not None:
            entry.update(extra(l))
        if ref is not None and ref.shape == got.shape:
            entry["rel_rms_error"] = float(f"{np.sqrt(np.mean((got - ref) ** 2)) / max(np.sqrt(np.mean(ref**2)), 1e-30):.3e}")
        out[l.name] = entry
    return out


