"""Bit-exact simulator of a quantized network (docs/fixed_point.md).

Integer arithmetic carried in float64: every value the semantics produce is
an integer below 2^53 in magnitude (24-bit messages and states times 16-bit
coefficients, sums of a few hundred such products), so float64 holds it
exactly and BLAS does the synapse sums. Shifts are multiplications by powers
of two (exact) followed by one floor (`numerics.floor_shift`). The S4D
neuron's recurrence is `targets/loihi2/qssm.py` (numba kernel or numpy). The
integers equal those of a straightforward int64 implementation
(tests/test_fixed_sim.py checks against one).

Saturation is counted, never hidden: `saturations` maps each layer to how
many values hit the rails.

The simulator as a target
-------------------------
Needs from a graph: `layers` in topological order; `tensors[name]` with
`.sequence`, `.features` and, for chip tensors, `.fmt.exp`; `input_layer`
(attrs `exp`, `features`); `output_layers` (attr `layout`). Every layer whose
output is a sequence runs on the chip and needs a registered `SimOp`; layers
after a readout run on the host (a registered `SimOp` with `on_chip = False`,
else the float executor's pointwise op).

Returns: `run(x)` the decoded float32 outputs (one array, or a list per
output), `trace(x)` every layer's values ((batch, time, F) int64 integers
for chip layers), `step(x_t)` one token's outputs, `saturations` the counts.

Per-op implementations (`SIM_OPS`, registered with `@register_sim_op(name)`;
a name registered twice raises):

    class SimOp:
        on_chip = True    # runs in integers inside the time loop (output a sequence)
        integer = True    # trace() gives its values as int64 (if its tensor has a format)
        def __init__(self, layer): ...             # prepare: float64 constants, once
        def sequence(self, sim, ins, m): ...        # whole sequence
        def step(self, sim, ins, m_t, state): ...   # one time step

`sequence` gets the inputs' values time-major, (T, b, F) for a chunk of b
samples (host ops: the batch's (B, T, F) or (B, F) values) and `m` the
encoded input messages; `step` gets (b, F) arrays and `state`, the run's
dict (per layer name what the op carries between steps; "t": steps taken).
Both return the layer's values and add what they clip to
`sim.saturations[layer.name]` (`sim.saturate`, `sim.finish`).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from s4dc.errors import InputDataError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.layout import arrange
from s4dc.registry import Registry
from s4dc.targets.float_exec import pointwise
from s4dc.targets.loihi2 import qssm
from s4dc.targets.loihi2.numerics import MESSAGE_BITS, floor_shift, qmax, round_half_up, sat, sat_count

CHUNK = 8    # samples per batch chunk: cache-sized working set


class SimOp:
    """One op's bit-exact behaviour (see the module docstring)."""

    on_chip = True
    integer = True

    def __init__(self, layer: Layer) -> None:
        self.layer = layer

    def sequence(self, sim: "FixedSimulator", ins: list[np.ndarray], m: np.ndarray) -> np.ndarray:
        """Default: the step rule applied to whole (T, b, F) arrays (ops pointwise in time)."""
        return self.step(sim, ins, m, {})

    def step(self, sim: "FixedSimulator", ins: list[np.ndarray], m_t: np.ndarray, state: dict) -> np.ndarray:
        raise NotImplementedError


SIM_OPS: Registry[type[SimOp]] = Registry("bit-exact simulator")


def register_sim_op(name: str) -> Callable[[type[SimOp]], type[SimOp]]:
    """Class decorator: the simulator's implementation of op `name`."""
    return SIM_OPS.register(name)


def _message_bits(l: Layer) -> int:
    return l.attrs.get("bits", {}).get("message", MESSAGE_BITS)


# --- chip ops -----------------------------------------------------------------------
@register_sim_op("input")
class _Input(SimOp):
    def step(self, sim, ins, m_t, state):
        return m_t


@register_sim_op("output")
class _Output(SimOp):
    integer = False  # the decoded output is the host's (decode_output)

    def step(self, sim, ins, m_t, state):
        return ins[0]


@register_sim_op("relu")
class _Relu(SimOp):
    def step(self, sim, ins, m_t, state):
        return np.maximum(ins[0], 0.0)


@register_sim_op("qaffine")
class _QAffine(SimOp):
    def __init__(self, layer: Layer) -> None:
        super().__init__(layer)
        p, a = layer.params, layer.attrs
        self.wt = p["weight"].astype(np.float64).T.copy()
        self.bias = p["bias_mant"].astype(np.float64) * 2.0 ** a["bias_exp"]

    def step(self, sim, ins, m_t, state):
        v = floor_shift(ins[0] @ self.wt, self.layer.attrs["shift"])  # exact sum: BLAS on integers < 2^53
        v += self.bias
        return sim.finish(self.layer, v, _message_bits(self.layer))


@register_sim_op("qadd")
class _QAdd(SimOp):
    def step(self, sim, ins, m_t, state):
        a = self.layer.attrs
        return sim.finish(self.layer, floor_shift(ins[0], a["shift_a"]) + floor_shift(ins[1], a["shift_b"]),
                          _message_bits(self.layer))


@register_sim_op("qssm")
class _QSsm(SimOp):
    """The recurrence in `qssm.run_sequence`; here the channel unit: sum of
    the state messages + (d u >> d_shift) + bias, saturated, ReLU."""

    def __init__(self, layer: Layer) -> None:
        super().__init__(layer)
        p, a = layer.params, layer.attrs
        self.msg_bits = a["bits"]["message"]
        self.ch = qssm.channels(p, a["a_frac"], a["bits"]["state"], self.msg_bits)
        self.d = p["d"].astype(np.float64)
        self.bias = p["bias_mant"].astype(np.float64) * 2.0 ** a["bias_exp"]

    def _run(self, sim, u: np.ndarray, x: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        acc, n = qssm.run_sequence(self.ch, u, *x, jit=sim.jit)
        sim.saturations[self.layer.name] += n
        acc += floor_shift(self.d * u, self.layer.attrs["d_shift"])  # d u: an exact 32-bit product
        acc += self.bias
        return sim.finish(self.layer, acc, self.msg_bits)

    def sequence(self, sim, ins, m):
        return self._run(sim, ins[0], qssm.zero_state(self.ch, ins[0].shape[1]))

    def step(self, sim, ins, m_t, state):
        u = ins[0]
        x = state.get(self.layer.name)
        if x is None:
            x = state[self.layer.name] = qssm.zero_state(self.ch, u.shape[0])
        return self._run(sim, u[None], x)[0]  # the whole-sequence driver with T = 1


# --- host ops (after a readout; float64) -------------------------------------------
@register_sim_op("readout")
class _Readout(SimOp):
    """`last`: the final step's messages; `mean`: their average; times 2^e."""

    on_chip = False
    integer = False

    def sequence(self, sim, ins, m):
        src = self.layer.inputs[0]
        seq = ins[0]
        return (seq[:, -1, :] if self.layer.attrs["mode"] == "last" else seq.mean(axis=1)) * 2.0 ** sim.exp_of(src)

    def step(self, sim, ins, m_t, state):
        r = ins[0]
        if self.layer.attrs["mode"] != "last":  # running mean of the steps so far
            acc = state.setdefault("acc", {})
            acc[self.layer.name] = acc.get(self.layer.name, 0.0) + r
            r = acc[self.layer.name] / state["t"]
        return r * 2.0 ** sim.exp_of(self.layer.inputs[0])


class _HostPointwise(SimOp):
    """Any other host layer: the float executor's pointwise op."""

    on_chip = False
    integer = False

    def sequence(self, sim, ins, m):
        return pointwise(self.layer, ins)

    def step(self, sim, ins, m_t, state):
        return pointwise(self.layer, ins)


def is_quantized(graph: Graph) -> bool:
    """A graph holding an integer op runs here (Network picks the simulator by it)."""
    return any(l.opdef.quantized for l in graph.layers)


class FixedSimulator:
    """Run a quantized graph: `run(x)` on float input (encoded, run in
    integers, decoded), `trace` for the integers, `step` for one token at a
    time."""

    def __init__(self, graph: Graph, jit: bool | None = None):
        """`jit`: use the numba kernel for S4D layers (default: when numba is
        installed); the integers are the same either way."""
        self.graph = graph
        self.jit = qssm.AVAILABLE if jit is None else (jit and qssm.AVAILABLE)
        self.ops: dict[str, SimOp] = {l.name: self._impl(l) for l in graph.layers}
        self.in_layer = graph.input_layer
        self.in_exp = self.in_layer.attrs["exp"]
        self.saturations: dict[str, int] = {l.name: 0 for l in graph.layers}
        self._state: dict[str, Any] | None = None

    def _impl(self, l: Layer) -> SimOp:
        cls = SIM_OPS.get(l.op)
        if self.graph.tensors[l.output].sequence:
            if cls is None or not cls.on_chip:
                raise AssertionError(f"{l.where()}: the simulator runs quantized graphs only "
                                     f"(chip ops: {', '.join(n for n in SIM_OPS.names() if SIM_OPS[n].on_chip)})")
            return cls(l)
        return (cls if cls is not None and not cls.on_chip else _HostPointwise)(l)

    # -- encoding ---------------------------------------------------------------
    def encode(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise InputDataError(f"input must be float32, got dtype {x.dtype}")
        m = round_half_up(x.astype(np.float64) * 2.0 ** -self.in_exp)
        over = np.count_nonzero(np.abs(m) > qmax(MESSAGE_BITS))
        self.saturations[self.in_layer.name] += int(over)
        return sat(m, MESSAGE_BITS) if over else m

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
        self._host(vals)
        return [self.decode_output(l, vals[l.output]) for l in self.graph.output_layers]

    def _host(self, vals: dict[str, np.ndarray]) -> None:
        for l in self.graph.layers:
            op = self.ops[l.name]
            if not op.on_chip:
                vals[l.output] = op.sequence(self, [vals[i] for i in l.inputs], None)

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
        self._host(vals)
        return {l.name: (vals[l.output].astype(np.int64) if self.ops[l.name].integer
                         and self.graph.tensors[l.output].fmt is not None else vals[l.output])
                for l in self.graph.layers}

    def _run_chip(self, m_in: np.ndarray, keep: bool) -> dict[str, np.ndarray]:
        """Run the chip layers over time. Without `keep`, only what the
        outputs need is stored. Batches go through in chunks of CHUNK so the
        working set stays in cache."""
        B, T, _ = m_in.shape
        g = self.graph
        seq_layers = [l for l in g.layers if self.ops[l.name].on_chip]
        host_layers = [l for l in g.layers if not self.ops[l.name].on_chip]
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
                cur[l.output] = self.ops[l.name].sequence(self, [cur[i] for i in l.inputs], m)
            for name in stored:
                outs[name][b0:b1] = cur[name].transpose(1, 0, 2)
        return outs

    # -- saturation, for the ops -------------------------------------------------------
    def saturate(self, l: Layer, v: np.ndarray, bits: int) -> None:
        """Clip v in place to signed `bits` bits, counting clipped values for `l`."""
        n = sat_count(v, bits)
        if n:
            self.saturations[l.name] += n

    def finish(self, l: Layer, v: np.ndarray, bits: int) -> np.ndarray:
        """A unit's output: saturated to `bits`, then the layer's ReLU."""
        self.saturate(l, v, bits)
        if l.attrs.get("relu"):
            np.maximum(v, 0.0, out=v)
        return v

    # -- host side: decoding -----------------------------------------------------------
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
            self._state = {"t": 0}
        st = self._state
        st["t"] += 1
        m = self.encode(x_t)
        cur: dict[str, np.ndarray] = {}
        vals: dict[str, np.ndarray] = {}
        for l in self.graph.layers:
            op = self.ops[l.name]
            if op.on_chip:
                cur[l.output] = op.step(self, [cur[i] for i in l.inputs], m, st)
                vals[l.output] = cur[l.output][:, None, :]
            else:  # host: chip values of this step, or host values
                vals[l.output] = op.step(self, [cur[i] if i in cur else vals[i] for i in l.inputs], m, st)
        outs = [self.decode_output(l, vals[l.output]) for l in self.graph.output_layers]
        return outs[0] if len(outs) == 1 else outs


def _run_part(args) -> tuple[list[np.ndarray], dict[str, int]]:
    graph, x = args
    qssm.PARALLEL = False  # a worker process: the pool already splits the batch
    sim = FixedSimulator(graph)
    out = sim.run(x)
    return (out if isinstance(out, list) else [out]), sim.saturations


@register_sim_op("qmimo")
class _QMimo(SimOp):
    """MIMO layer (docs/fixed_point.md, `qmimo`): B synapse sums, the mode
    neurons' recurrence, their re/im messages, the C and D synapse sums into
    the output units, bias, saturation, ReLU; all in `qmimo.run_layer`
    (blocks of time steps, samples over threads)."""

    def __init__(self, layer: Layer) -> None:
        from s4dc.targets.loihi2 import qmimo

        super().__init__(layer)
        self._run_layer = qmimo.run_layer
        self.k = qmimo.fold(layer.params, layer.attrs)

    def _run(self, sim, u: np.ndarray, x: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        y, n = self._run_layer(self.k, u, *x, jit=sim.jit)
        if n:
            sim.saturations[self.layer.name] += n
        return y

    def _zero(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        P = self.k.modes
        return np.zeros((batch, P)), np.zeros((batch, P))

    def sequence(self, sim, ins, m):
        return self._run(sim, ins[0], self._zero(ins[0].shape[1]))

    def step(self, sim, ins, m_t, state):
        x = state.get(self.layer.name)
        if x is None:
            x = state[self.layer.name] = self._zero(ins[0].shape[0])
        return self._run(sim, ins[0][None], x)[0]
