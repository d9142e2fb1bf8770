"""Bit-exact simulator of a quantized network (docs/fixed_point.md).

Integer arithmetic carried in float64: every value the semantics produce is
an integer below 2^53 in magnitude (24-bit messages and states times 16-bit
coefficients, sums of a few hundred such products), so float64 holds it
exactly, BLAS does the synapse sums, and a complex128 multiply does an S4D
neuron's four products at once. Shifts are multiplications by powers of two
(exact) followed by one floor. The integers equal those of a straightforward
int64 implementation (tests/test_fixed_sim.py checks against one).

Saturation is counted, never hidden: `saturations` maps each layer to how
many values hit the rails.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from s4dc.errors import InputDataError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.layout import arrange
from s4dc.targets.float_exec import pointwise
from s4dc.targets import fixed_sim_jit as jit_mod
from s4dc.targets.loihi2.numerics import MESSAGE_BITS, qmax

QUANTIZED_OPS = {"qaffine", "qssm", "qadd"}
CHUNK = 8    # samples per batch chunk: cache-sized working set
TBLOCK = 4   # time steps per block in the numpy recurrence


class _Layer:
    """Precomputed float64 constants of one quantized layer."""

    def __init__(self, l: Layer):
        self.l, p, a = l, l.params, l.attrs
        self.msg = float(qmax(a.get("bits", {}).get("message", MESSAGE_BITS)))
        if l.op == "qaffine":
            self.wt = p["weight"].astype(np.float64).T.copy()
            self.scale = 2.0 ** -a["shift"]
            self.bias = p["bias_mant"].astype(np.float64) * 2.0 ** a["bias_exp"]
        elif l.op == "qssm":
            # Shifts are powers of two, folded into the coefficients: scaling
            # by 2^-k is exact, so lam*x and b*u stay exact products.
            self.lam = (p["a_re"] + 1j * p["a_im"]) * 2.0 ** -a["a_frac"]
            self.b = (p["b_re"] + 1j * p["b_im"]) * 2.0 ** -p["b_shift"].astype(np.float64)
            # Re(conj(c) x) = c_re x_re + c_im x_im; we need c_re x_re - c_im x_im = Re(c x).
            self.c = (p["c_re"] + 1j * p["c_im"]) * 2.0 ** -p["c_shift"].astype(np.float64)
            self.d = p["d"].astype(np.float64) * 2.0 ** -a["d_shift"]
            self.bias = p["bias_mant"].astype(np.float64) * 2.0 ** a["bias_exp"]
            self.state = float(qmax(a["bits"]["state"]))
            # For the kernel: live states (b or c nonzero) first in each channel;
            # the others stay exactly 0 and add nothing, so they are skipped.
            live = (self.b != 0) | (self.c != 0)
            order = np.argsort(~live, axis=1, kind="stable")
            self.jit_coefs = tuple(np.ascontiguousarray(np.take_along_axis(v, order, axis=1)) for v in (
                self.lam.real, self.lam.imag, self.b.real, self.b.imag, self.c.real, self.c.imag)) + \
                (live.sum(axis=1).astype(np.int64),)
        elif l.op == "qadd":
            self.sa, self.sb = 2.0 ** -a["shift_a"], 2.0 ** -a["shift_b"]


class FixedSimulator:
    """Run a quantized graph: `run(x)` on float input (encoded, run in
    integers, decoded), `run_int`/`trace` for the integers, `step` for one
    token at a time."""

    def __init__(self, graph: Graph, jit: bool | None = None):
        """`jit`: use the numba kernel for S4D layers (default: when numba is
        installed); the integers are the same either way."""
        self.graph = graph
        self.jit = jit_mod.AVAILABLE if jit is None else (jit and jit_mod.AVAILABLE)
        self.layers = {l.name: _Layer(l) for l in graph.layers}
        self.in_layer = graph.input_layer
        self.in_exp = self.in_layer.attrs["exp"]
        self.saturations: dict[str, int] = {l.name: 0 for l in graph.layers}
        self._state: dict[str, Any] | None = None

    # -- encoding ---------------------------------------------------------------
    def encode(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise InputDataError(f"input must be float32, got dtype {x.dtype}")
        m = np.floor(x.astype(np.float64) * 2.0 ** -self.in_exp + 0.5)
        lim = float(qmax(MESSAGE_BITS))
        over = np.count_nonzero(np.abs(m) > lim)
        self.saturations[self.in_layer.name] += int(over)
        return np.clip(m, -lim - 1, lim) if over else m

    def exp_of(self, tensor: str) -> int:
        return self.graph.tensors[tensor].fmt.exp

    # -- whole sequences -------------------------------------------------------------
    def run(self, x: np.ndarray, workers: int = 1) -> np.ndarray | list[np.ndarray]:
        """Outputs for a whole batch; `workers` > 1 splits the batch over
        processes (same integers: samples are independent)."""
        f = self.in_layer.attrs["features"]
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[2] != f:
            raise InputDataError(f"input must be (batch, time, {f}), got shape {x.shape}")
        if workers > 1 and x.shape[0] >= 2 * CHUNK:
            return self._run_parallel(x, workers)
        outs = self.decode(self._run_chip(self.encode(x), keep=False))
        return outs[0] if len(outs) == 1 else outs

    def decode(self, chip: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Host side: from the chip tensors' integer messages ((batch, time,
        F) by tensor name), the readouts, host layers and decoded outputs.
        Any backend that produced the integers (Lava) decodes through here."""
        vals = {t: v.astype(np.float64) for t, v in chip.items()}
        for l in self.graph.layers:
            if not self.graph.tensors[l.output].sequence:
                vals[l.output] = self._host(l, vals)
        return [self.decode_output(l, vals[l.output]) for l in self.graph.output_layers]

    def _run_parallel(self, x: np.ndarray, workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        parts = np.array_split(np.arange(x.shape[0]), workers)
        # spawn, not fork: numba's thread pool (used for batches in this
        # process) does not survive a fork.
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = list(pool.map(_run_part, [(self.graph, x[p]) for p in parts]))
        for _, sats in results:
            for k, v in sats.items():
                self.saturations[k] += v
        outs = [np.concatenate([r[0][i] for r in results]) for i in range(len(self.graph.output_layers))]
        return outs[0] if len(outs) == 1 else outs

    def trace(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's values per step: integers (int64, (batch, time, F))
        for the chip's layers, floats for the host's decoding layers."""
        vals = self._run_chip(self.encode(np.asarray(x)), keep=True)
        for l in self.graph.layers:
            if not self.graph.tensors[l.output].sequence:
                vals[l.output] = self._host(l, vals)
        return {l.name: (vals[l.output].astype(np.int64) if l.op in QUANTIZED_OPS | {"input", "relu"}
                         and self.graph.tensors[l.output].fmt is not None else vals[l.output])
                for l in self.graph.layers}

    def _run_chip(self, m_in: np.ndarray, keep: bool) -> dict[str, np.ndarray]:
        """Run the chip layers over time. Without `keep`, only what the
        outputs need is stored. Batches go through in chunks of CHUNK so the
        working set stays in cache."""
        B, T, _ = m_in.shape
        g = self.graph
        seq_layers = [l for l in g.layers if g.tensors[l.output].sequence]
        host_layers = [l for l in g.layers if not g.tensors[l.output].sequence]
        if keep:
            stored = {l.output for l in seq_layers}
        else:  # what the host needs: tensors read by host layers or outputs
            needed = {i for l in host_layers for i in l.inputs} | {l.output for l in g.output_layers}
            stored = needed & {l.output for l in seq_layers}
        outs = {t: np.empty((B, T, g.tensors[t].features)) for t in stored}
        for b0 in range(0, B, CHUNK):
            b1 = min(B, b0 + CHUNK)
            m = np.ascontiguousarray(m_in[b0:b1].transpose(1, 0, 2))  # time-major
            # Layer by layer over the whole sequence (the chip part is
            # feed-forward), so synapses are one BLAS call per layer.
            cur: dict[str, np.ndarray] = {}
            for l in seq_layers:
                cur[l.output] = self._seq_layer(l, [cur[i] for i in l.inputs], m)
            for name in stored:
                outs[name][b0:b1] = cur[name].transpose(1, 0, 2)
        return outs

    # -- a whole sequence of one chip layer (time-major arrays) ---------------------
    def _seq_layer(self, l: Layer, ins: list[np.ndarray], m: np.ndarray) -> np.ndarray:
        if l.op != "qssm":  # pointwise in time: the step rule on (T, b, F) arrays
            return self._step_layer(l, ins, m, {})
        c = self.layers[l.name]
        u = ins[0]
        T, b, H = u.shape
        if self.jit:
            return self._seq_qssm_jit(l, c, u)
        y = np.empty((T, b, H))
        x = np.zeros((b,) + c.lam.shape, np.complex128)
        blk = np.empty((TBLOCK, b) + c.lam.shape, np.complex128)
        for t0 in range(0, T, TBLOCK):
            n = min(TBLOCK, T - t0)
            bu = c.b * u[t0:t0 + n, :, :, None]
            bu += 0.5 + 0.5j  # the rounding's half, added once
            x_start = x
            # Optimistic: run the block without clipping, then check it once.
            for k in range(n):
                np.multiply(c.lam, x, out=blk[k])
                blk[k] += bu[k]
                np.floor(blk[k].view(np.float64), out=blk[k].view(np.float64))
                x = blk[k]
            xs = blk[:n].view(np.float64)
            if xs.max(initial=0.0) > c.state or xs.min(initial=0.0) < -c.state - 1:
                x = x_start  # some state saturated: redo the block step by step
                for k in range(n):
                    np.multiply(c.lam, x, out=blk[k])
                    blk[k] += bu[k]
                    zr = blk[k].view(np.float64)
                    np.floor(zr, out=zr)
                    self._saturate(l, zr, c.state)
                    x = blk[k]
            x = blk[n - 1].copy()
            o = (c.c * blk[:n]).real
            o += 0.5
            np.floor(o, out=o)
            self._saturate(l, o, c.msg)
            v = o.sum(axis=-1)
            v += np.floor(c.d * u[t0:t0 + n])
            v += c.bias
            y[t0:t0 + n] = self._finish(l, v, c.msg)
        return y

    def _seq_qssm_jit(self, l: Layer, c: _Layer, u: np.ndarray) -> np.ndarray:
        T, b, H = u.shape
        shape = (b,) + c.lam.shape
        x_re, x_im, acc = np.zeros(shape), np.zeros(shape), np.empty((T, b, H))
        sat = jit_mod.qssm_sequence(*c.jit_coefs, np.ascontiguousarray(u), c.state, c.msg, x_re, x_im, acc)
        self.saturations[l.name] += int(sat)
        acc += np.floor(c.d * u)
        acc += c.bias
        return self._finish(l, acc, c.msg)

    # -- one step of the chip part ---------------------------------------------------
    def _step_layer(self, l: Layer, ins: list[np.ndarray], m_t: np.ndarray, state: dict) -> np.ndarray:
        op = l.op
        if op == "input":
            return m_t
        if op == "relu":
            return np.maximum(ins[0], 0.0)
        if op == "output":
            return ins[0]
        if op == "input":
            return m_t
        c = self.layers[l.name]
        if op == "qaffine":
            v = ins[0] @ c.wt
            v *= c.scale
            np.floor(v, out=v)
            v += c.bias
            return self._finish(l, v, c.msg)
        if op == "qadd":
            return self._finish(l, np.floor(ins[0] * c.sa) + np.floor(ins[1] * c.sb), c.msg)
        if op == "qssm":
            u = ins[0]
            x = state.get(l.name)
            if x is None:
                x = np.zeros(u.shape[:1] + c.lam.shape, np.complex128)
            z = c.lam * x
            z += c.b * u[:, :, None]
            zr = z.view(np.float64)  # interleaved re, im: one floor for both
            zr += 0.5
            np.floor(zr, out=zr)
            self._saturate(l, zr, c.state)
            state[l.name] = z
            o = (c.c * z).real  # exact: 40-bit products, power-of-two scale
            o += 0.5
            np.floor(o, out=o)
            self._saturate(l, o, c.msg)
            v = o.sum(axis=-1)
            v += np.floor(c.d * u)
            v += c.bias
            return self._finish(l, v, c.msg)
        raise AssertionError(f"{l.where()}: the simulator runs quantized graphs only")

    def _saturate(self, l: Layer, v: np.ndarray, lim: float) -> None:
        """Clip v in place to [-lim-1, lim], counting clipped values. Two
        reductions on the common path; counting only when something clips."""
        if v.max(initial=0.0) > lim or v.min(initial=0.0) < -lim - 1:
            self.saturations[l.name] += int(np.count_nonzero((v > lim) | (v < -lim - 1)))
            np.clip(v, -lim - 1, lim, out=v)

    def _finish(self, l: Layer, v: np.ndarray, lim: float) -> np.ndarray:
        self._saturate(l, v, lim)
        if l.attrs.get("relu"):
            np.maximum(v, 0.0, out=v)
        return v

    # -- host side: readouts, decoding, what follows a readout ----------------------
    def _host(self, l: Layer, vals: dict[str, np.ndarray]) -> np.ndarray:
        if l.op == "readout":
            src = l.inputs[0]
            scale = 2.0 ** self.exp_of(src)
            seq = vals[src]
            return (seq[:, -1, :] if l.attrs["mode"] == "last" else seq.mean(axis=1)) * scale
        return pointwise(l, [vals[i] for i in l.inputs])

    def decode_output(self, l: Layer, v: np.ndarray) -> np.ndarray:
        """Output layer `l`'s values as the model returns them (float32, its layout)."""
        t = self.graph.tensors[l.output]
        if t.sequence:
            v = v * 2.0 ** self.exp_of(l.inputs[0])
        return arrange(v, l.attrs["layout"], t.sequence).astype(np.float32)

    # -- token by token --------------------------------------------------------------
    def reset(self) -> None:
        self._state = None

    def step(self, x_t: np.ndarray) -> np.ndarray | list[np.ndarray]:
        x_t = np.asarray(x_t)
        if self._state is None:
            self._state = {"t": 0, "acc": {}}
        st = self._state
        st["t"] += 1
        m = self.encode(x_t)
        cur: dict[str, np.ndarray] = {}
        vals: dict[str, np.ndarray] = {}
        for l in self.graph.layers:
            if self.graph.tensors[l.output].sequence:
                cur[l.output] = self._step_layer(l, [cur[i] for i in l.inputs], m, st)
                vals[l.output] = cur[l.output][:, None, :]
            elif l.op == "readout":
                src = cur[l.inputs[0]]
                if l.attrs["mode"] == "last":
                    r = src
                else:
                    st["acc"][l.name] = st["acc"].get(l.name, 0.0) + src
                    r = st["acc"][l.name] / st["t"]
                vals[l.output] = r * 2.0 ** self.exp_of(l.inputs[0])
            else:
                vals[l.output] = pointwise(l, [vals[i] for i in l.inputs])
        outs = [self.decode_output(l, vals[l.output]) for l in self.graph.output_layers]
        return outs[0] if len(outs) == 1 else outs


def _run_part(args) -> tuple[list[np.ndarray], dict[str, int]]:
    graph, x = args
    jit_mod.PARALLEL = False  # a worker process: the pool already splits the batch
    sim = FixedSimulator(graph)
    out = sim.run(x)
    return (out if isinstance(out, list) else [out]), sim.saturations
