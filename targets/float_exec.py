"""Float executor: runs an IR graph in numpy (float64), whole sequences or
token by token.

This is the float reference every later target is checked against. It runs
any verified graph, including the intermediate forms the passes produce
(convolutions, dense or continuous state spaces), so each pass can be checked
numerically against the one before.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from s4dc.errors import InputDataError, S4dcError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.layout import arrange
from s4dc.ir.ssm import discrete_ssm
from s4dc.registry import Registry

CHUNK = 32  # samples per batch chunk in whole-sequence runs


@dataclass(frozen=True)
class FloatImpl:
    """How the float executor runs one op.

    seq(ex, layer, ins, x) -> output for whole sequences: ins are the
        inputs' values ((batch, time, F) for sequences, (batch, F) after a
        readout); x is the model input.
    step(ex, layer, ins, x_t, st) -> output for one time step; `st` is the
        executor's state dict (per layer name, plus "t", the steps taken).
    prepare(layer) -> constants computed once per layer, in ex.prepared[name].
    """

    seq: Callable[["FloatExecutor", Layer, list[np.ndarray], np.ndarray], np.ndarray]
    step: Callable[["FloatExecutor", Layer, list[np.ndarray], np.ndarray, dict], np.ndarray]
    prepare: Callable[[Layer], Any] | None = None


FLOAT_OPS: Registry[FloatImpl] = Registry("float executor")


class FloatExecutor:
    """Run a graph. `run(x)` takes (batch, time, features); `step(x_t)` takes
    (batch, features) and keeps the state between calls until `reset()`."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.impls: dict[str, FloatImpl] = {}
        for l in graph.layers:
            impl = FLOAT_OPS.get(l.op)
            if impl is None:
                raise S4dcError(f"{l.where()}: the float executor has no implementation of op '{l.op}' "
                                f"(it runs {', '.join(FLOAT_OPS.names())})")
            self.impls[l.op] = impl
        self.prepared = {l.name: self.impls[l.op].prepare(l) for l in graph.layers if self.impls[l.op].prepare}
        self._state: dict[str, Any] | None = None
        self._stats: dict[str, np.ndarray] | None = None

    # -- whole sequences ------------------------------------------------
    def trace(self, x: np.ndarray, state_absmax: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Every layer's output (internal layout) for a whole input sequence.
        With `state_absmax`, also record per ssm layer the largest |Re| and
        |Im| each state reaches, (H, N), for calibration."""
        x = self._check_input(x, sequence=True)
        self._stats = state_absmax
        vals: dict[str, np.ndarray] = {}
        for l in self.graph.layers:
            ins = [vals[t] for t in l.inputs]
            vals[l.output] = self.impls[l.op].seq(self, l, ins, x)
        return {l.name: vals[l.output] for l in self.graph.layers}

    def run(self, x: np.ndarray) -> np.ndarray | list[np.ndarray]:
        tr = self.trace(x)
        outs = [self._arrange(l, tr[l.name]) for l in self.graph.output_layers]
        return outs[0] if len(outs) == 1 else outs

    # -- token by token -------------------------------------------------
    def reset(self) -> None:
        self._state = None

    def step(self, x_t: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Advance one time step. Returns each output as it would be if the
        sequence ended here (readouts give the last value or running mean)."""
        x_t = np.asarray(x_t, dtype=np.float64)
        if x_t.ndim != 2 or x_t.shape[1] != self.graph.input_layer.attrs["features"]:
            raise InputDataError(f"step input must be (batch, {self.graph.input_layer.attrs['features']}), "
                                 f"got {x_t.shape}")
        if self._state is None:
            self._state = {"t": 0}
        st = self._state
        st["t"] += 1
        vals: dict[str, np.ndarray] = {}
        for l in self.graph.layers:
            ins = [vals[t] for t in l.inputs]
            vals[l.output] = self.impls[l.op].step(self, l, ins, x_t, st)
        outs = [self._arrange_step(l, vals[l.output]) for l in self.graph.output_layers]
        return outs[0] if len(outs) == 1 else outs

    # -- helpers --------------------------------------------------------
    def _check_input(self, x: np.ndarray, sequence: bool) -> np.ndarray:
        x = np.asarray(x)
        f = self.graph.input_layer.attrs["features"]
        if x.ndim != 3 or x.shape[2] != f:
            raise InputDataError(f"input must be (batch, time, {f}), got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise InputDataError(f"input must be floating point, got {x.dtype}")
        return x.astype(np.float64)

    def _arrange(self, l: Layer, a: np.ndarray) -> np.ndarray:
        return arrange(a, l.attrs["layout"], self.graph.tensors[l.output].sequence).astype(np.float32)

    def _arrange_step(self, l: Layer, a: np.ndarray) -> np.ndarray:
        seq = self.graph.tensors[l.output].sequence
        if seq:  # one step of a sequence output: a length-1 time axis
            a = a[:, None, :]
        return arrange(a, l.attrs["layout"], seq).astype(np.float32)


def pointwise(l: Layer, ins: list[np.ndarray]) -> np.ndarray:
    """The float ops that act on each time step (or vector) alone; the
    simulator's host side runs the layers after a readout through this."""
    fn = POINTWISE.get(l.op)
    if fn is None:
        raise AssertionError(f"{l.where()}: not a pointwise op")
    return fn(l, ins)


POINTWISE: Registry[Callable[[Layer, list[np.ndarray]], np.ndarray]] = Registry("pointwise float op")


def _pointwise_impl(op: str, fn: Callable[[Layer, list[np.ndarray]], np.ndarray]) -> None:
    POINTWISE.add(op, fn)
    FLOAT_OPS.add(op, FloatImpl(seq=lambda ex, l, ins, x: fn(l, ins), step=lambda ex, l, ins, x_t, st: fn(l, ins)))


_pointwise_impl("affine", lambda l, ins: ins[0] @ l.params["weight"].T + l.params["bias"])
_pointwise_impl("relu", lambda l, ins: np.maximum(ins[0], 0.0))
_pointwise_impl("add", lambda l, ins: ins[0] + ins[1])
_pointwise_impl("output", lambda l, ins: ins[0])
FLOAT_OPS.add("input", FloatImpl(seq=lambda ex, l, ins, x: x, step=lambda ex, l, ins, x_t, st: x_t))


def _readout_step(ex: FloatExecutor, l: Layer, ins: list[np.ndarray], x_t: np.ndarray, st: dict) -> np.ndarray:
    if l.attrs["mode"] == "last":
        return ins[0]
    acc = st.get(l.name, 0.0) + ins[0]
    st[l.name] = acc
    return acc / st["t"]


FLOAT_OPS.add("readout", FloatImpl(
    seq=lambda ex, l, ins, x: ins[0][:, -1, :] if l.attrs["mode"] == "last" else ins[0].mean(axis=1),
    step=_readout_step))


def _conv_step(ex: FloatExecutor, l: Layer, ins: list[np.ndarray], x_t: np.ndarray, st: dict) -> np.ndarray:
    p = l.params
    k = p["kernel"]
    hist = _history(st, l.name, ins[0], k.shape[1])
    return (hist * k.T[None]).sum(axis=1) + ins[0] * p["D"] + p["bias"]


def _kept(st: dict, name: str, shape: tuple[int, ...], dtype: type = float) -> np.ndarray:
    """What a layer keeps from one step to the next, st[name]; zeros before its first step."""
    s = st.get(name)
    return np.zeros(shape, dtype) if s is None else s


def _keep_peaks(ex: FloatExecutor, l: Layer, peak: np.ndarray | None) -> None:
    """Fold a run's largest |Re| and |Im| per state into the calibration record (trace's state_absmax)."""
    if ex._stats is not None and peak is not None:
        ex._stats[l.name] = np.maximum(ex._stats.get(l.name, 0.0), peak)


def _history(st: dict, name: str, u_t: np.ndarray, taps: int) -> np.ndarray:
    """The last `taps` inputs of a convolution, newest first, (batch, taps, F), kept in st[name]."""
    hist = _kept(st, name, (u_t.shape[0], taps, u_t.shape[1]))
    hist = np.concatenate([u_t[:, None, :], hist[:, :-1]], axis=1)
    st[name] = hist
    return hist


FLOAT_OPS.add("conv", FloatImpl(
    seq=lambda ex, l, ins, x: causal_conv(ins[0], l.params["kernel"]) + ins[0] * l.params["D"] + l.params["bias"],
    step=_conv_step))


def _ssm_coeffs(layer: Layer) -> dict[str, Any]:
    p = layer.params
    if layer.attrs["time"] == "continuous":
        A, B = discrete_ssm(layer)
    else:
        A, B = p["A"], p["B"]
    gain = 2.0 if layer.attrs.get("folded") else 1.0
    return {"dense": layer.attrs["form"] == "dense", "A": A, "B": B, "C": p["C"] * gain,
            "D": p["D"], "bias": p["bias"]}


def _ssm_seq(ex: FloatExecutor, l: Layer, ins: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    c = ex.prepared[l.name]
    y = np.empty_like(ins[0])
    peak = np.zeros(c["A"].shape[:2])
    for b0 in range(0, len(y), CHUNK):  # cache-sized batch chunks
        u = np.ascontiguousarray(ins[0][b0:b0 + CHUNK].transpose(1, 0, 2))
        state = np.zeros(u.shape[1:2] + c["A"].shape[:2],
                         dtype=complex if np.iscomplexobj(c["B"]) or not c["dense"] else float)
        for t in range(u.shape[0]):
            state, y[b0:b0 + CHUNK, t] = _ssm_step(c, state, u[t])
            if ex._stats is not None:
                np.maximum(peak, np.abs(state.real).max(axis=0), out=peak)
                np.maximum(peak, np.abs(state.imag).max(axis=0), out=peak)
    _keep_peaks(ex, l, peak)
    return y


def _ssm_one_step(ex: FloatExecutor, l: Layer, ins: list[np.ndarray], x_t: np.ndarray, st: dict) -> np.ndarray:
    c = ex.prepared[l.name]
    s = _kept(st, l.name, (ins[0].shape[0],) + c["A"].shape[:2], complex if np.iscomplexobj(c["B"]) else float)
    st[l.name], y = _ssm_step(c, s, ins[0])
    return y


FLOAT_OPS.add("ssm", FloatImpl(seq=_ssm_seq, step=_ssm_one_step, prepare=_ssm_coeffs))


def _ssm_step(c: dict[str, Any], state: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if c["dense"]:
        state = np.einsum("hij,bhj->bhi", c["A"], state) + c["B"] * u[..., None]
        y = (c["C"] * state).sum(axis=-1)
    else:
        state = c["A"] * state + c["B"] * u[..., None]
        y = (c["C"] * state).sum(axis=-1).real
    return state, y + c["D"] * u + c["bias"]


def causal_conv(u: np.ndarray, k: np.ndarray) -> np.ndarray:
    """y[b, t, h] = sum_l k[h, l] u[b, t-l, h], by FFT."""
    T, K = u.shape[1], k.shape[1]
    n = 1 << int(np.ceil(np.log2(T + K - 1)))
    U = np.fft.rfft(u, n=n, axis=1)
    Kf = np.fft.rfft(k.T, n=n, axis=0)
    return np.fft.irfft(U * Kf[None], n=n, axis=1)[:, :T, :]


# --- mimo: one shared state of P modes (s4dc.ir.ops_mimo) -----------------------------
def _mimo_coeffs(layer: Layer) -> dict[str, Any]:
    from s4dc.ir.mimo import discrete_mimo

    p = layer.params
    A, B = discrete_mimo(layer) if layer.attrs["time"] == "continuous" else (p["A"], p["B"])
    gain = 2.0 if layer.attrs.get("folded") else 1.0
    dense = layer.attrs["form"] == "dense"
    # Row-vector form: state (batch, P) @ At, input (batch, H_in) @ Bt, ...
    return {"dense": dense, "At": A.T if dense else A, "Bt": B.T.copy(), "Ct": (p["C"] * gain).T.copy(),
            "Dt": p["D"].T.copy(), "bias": p["bias"], "complex": np.iscomplexobj(A) or np.iscomplexobj(B)}


def _mimo_run(c: dict[str, Any], u: np.ndarray, state: np.ndarray, peak: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """u (T, b, H_in) time-major, state (b, P): outputs (T, b, H_out), final state."""
    drive = u @ c["Bt"]  # every step's input term at once: one BLAS call
    xs = np.empty(drive.shape, drive.dtype)
    for t in range(u.shape[0]):
        state = (state @ c["At"] if c["dense"] else c["At"] * state) + drive[t]
        xs[t] = state
    if peak is not None:
        np.maximum(peak, np.abs(xs.real).max(axis=(0, 1), initial=0.0), out=peak)
        np.maximum(peak, np.abs(xs.imag).max(axis=(0, 1), initial=0.0), out=peak)
    return (xs @ c["Ct"]).real + u @ c["Dt"] + c["bias"], state


def _mimo_seq(ex: FloatExecutor, l: Layer, ins: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    c = ex.prepared[l.name]
    u_all = ins[0]
    y = np.empty(u_all.shape[:2] + (c["Ct"].shape[1],))
    peak = np.zeros(c["Bt"].shape[1]) if ex._stats is not None else None
    for b0 in range(0, len(u_all), CHUNK):
        u = np.ascontiguousarray(u_all[b0:b0 + CHUNK].transpose(1, 0, 2))
        s0 = np.zeros((u.shape[1], c["Bt"].shape[1]), complex if c["complex"] else float)
        y[b0:b0 + CHUNK] = _mimo_run(c, u, s0, peak)[0].transpose(1, 0, 2)
    _keep_peaks(ex, l, peak)
    return y


def _mimo_step(ex: FloatExecutor, l: Layer, ins: list[np.ndarray], x_t: np.ndarray, st: dict) -> np.ndarray:
    c = ex.prepared[l.name]
    s = _kept(st, l.name, (ins[0].shape[0], c["Bt"].shape[1]), complex if c["complex"] else float)
    y, st[l.name] = _mimo_run(c, ins[0][None], s, None)
    return y[0]


FLOAT_OPS.add("mimo", FloatImpl(seq=_mimo_seq, step=_mimo_step, prepare=_mimo_coeffs))


# --- mconv: full causal convolution over time (realized as mimo later) -------------------
def full_causal_conv(u: np.ndarray, k: np.ndarray) -> np.ndarray:
    """y[b, t, o] = sum_{l, i} k[o, i, l] u[b, t-l, i] (u (B, T, H_in), k
    (H_out, H_in, L)), by FFT."""
    T, K = u.shape[1], k.shape[2]
    n = 1 << int(np.ceil(np.log2(T + K - 1)))
    U = np.fft.rfft(u, n=n, axis=1)                  # (B, F, H_in)
    Kf = np.fft.rfft(k, n=n, axis=2)                 # (H_out, H_in, F)
    Y = np.einsum("bfi,oif->bfo", U, Kf)
    return np.fft.irfft(Y, n=n, axis=1)[:, :T, :]


def _mconv_seq(ex: FloatExecutor, l: Layer, ins: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    return full_causal_conv(ins[0], l.params["kernel"]) + l.params["bias"]


def _mconv_step(ex: FloatExecutor, l: Layer, ins: list[np.ndarray], x_t: np.ndarray, st: dict) -> np.ndarray:
    k = l.params["kernel"]
    hist = _history(st, l.name, ins[0], k.shape[2])
    return np.einsum("bli,oil->bo", hist, k) + l.params["bias"]


FLOAT_OPS.add("mconv", FloatImpl(seq=_mconv_seq, step=_mconv_step))
