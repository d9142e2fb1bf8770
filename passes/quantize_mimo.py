"""The quantization rule of `mimo` layers (registered in passes/quantize.py's
RULES): Loihi 2 integers for a MIMO diagonal layer (docs/fixed_point.md, `qmimo`).

- balance: each mode's state is rescaled (B row * g, C column / g) to peak at
  1 on the calibration set, so every mode uses its whole state register;
- B: synapse weights (`weight` bits, 8 by default), one exponent per mode
  row (the mode neuron's own b_shift applies it to the exact synapse sum);
- Lambda: `a` bits per mode, impulse response closest (quantize_modes);
- states `state` bits, sent as re and im messages (`message` bits; rounded
  by x_shift where the state is wider);
- C: synapse weights, one exponent for the layer (the output units share
  the output tensor's exponent), c_im symmetric so that -c_im is a weight;
- D: synapse weights, bias as a 16-bit mantissa.
"""
from __future__ import annotations

import numpy as np

from s4dc.ir.layer import Layer
from s4dc.ir.ops import QMIMO
from s4dc.targets.loihi2.numerics import MAX_EXACT_B_SHIFT, BitWidths, round_to_grid


def quantize_mimo(l: Layer, e_u: int, peak_out: float, state_peak: np.ndarray, bw: BitWidths, margin: float,
                  relu: bool, preset: int | None) -> int:
    from s4dc.passes.quantize import (_bias, _exp_for, _quant, _weight_exp, quantize_modes,
                                       settle_shift)  # (cycle: RULES' module)

    p = l.params
    gain = 2.0 if l.attrs.get("folded") else 1.0
    lam, B, C, D = p["A"], p["B"].astype(complex), p["C"].astype(complex) * gain, p["D"]
    live = state_peak > 0
    g = np.where(live, 1.0 / np.where(live, state_peak, 1.0), 1.0)
    B, C = B * g[:, None], C / g[None, :]
    e_x = _exp_for(1.0, bw.state, margin)
    x_shift = max(0, bw.state - bw.message)
    e_m = e_x + x_shift  # exponent of the state messages
    a_re, a_im = quantize_modes(lam, bw.a)
    # B: one exponent per mode row (re and im together)
    e_b = np.array([_weight_exp(np.concatenate([r.real, r.imag]), bw.weight) for r in B], np.int64).reshape(-1)
    b_shift = e_x - e_b - e_u
    e_b = np.where(b_shift > MAX_EXACT_B_SHIFT, e_b + (b_shift - MAX_EXACT_B_SHIFT), e_b)
    b_shift = e_x - e_b - e_u
    b_re = round_to_grid(B.real, e_b[:, None], bw.weight)
    b_im = round_to_grid(B.imag, e_b[:, None], bw.weight)
    # C: one exponent; symmetric so that -c_im fits the weight bits too
    e_c = _weight_exp(np.concatenate([C.real.ravel(), C.imag.ravel()]), bw.weight)
    c_re = round_to_grid(C.real, e_c, bw.weight, symmetric=True)
    c_im = round_to_grid(C.imag, e_c, bw.weight, symmetric=True)
    for arr in (b_re, b_im):
        arr[~live] = 0
    for arr in (c_re, c_im):
        arr[:, ~live] = 0
    e_y = _exp_for(peak_out, bw.message, margin) if preset is None else preset
    c_shift = settle_shift(e_y - e_c - e_m, c_re, c_im)
    e_d = _weight_exp(D, bw.weight)
    d = _quant(D, e_d, bw.weight)
    d_shift = settle_shift(e_y - e_d - e_u, d)
    bm, be = _bias(p["bias"], e_y)
    l.op = QMIMO.name
    l.params = {"a_re": a_re, "a_im": a_im, "b_re": b_re, "b_im": b_im, "b_shift": b_shift.astype(np.int64),
                "c_re": c_re, "c_im": c_im, "d": d, "bias_mant": bm}
    l.attrs = {"a_frac": bw.a - 1, "x_shift": x_shift, "c_shift": c_shift, "d_shift": d_shift,
               "bias_exp": be, "state_exp": e_x, "c_exp": e_c, "d_exp": e_d, "relu": relu, "bits": bw.to_json()}
    return e_y
