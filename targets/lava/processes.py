"""s4dc's Lava processes and their CPU models (needs lava-nc: .venv-lava).

- `S4dNeuron`: one neuron per complex state (as lava's `lava.proc.s4d.S4d`),
  bit-accurate `fixed_pt` model implementing docs/fixed_point.md's `qssm`
  state update and per-state output message, and a `floating_pt` model that
  is lava's S4d on the dequantized coefficients.
- `Unit`: a channel unit: sum of synaptic input + (bias_mant << bias_exp),
  saturated to the message width, optional ReLU. (lava's `SigmaDelta`
  integrates its input over time and never saturates, which is not our
  semantics: see docs/lava.md.)
- `MessageSource` / `MessageSink`: host <-> chip integer message streams.

Every process takes `placement` (a list of {"chip", "core", ...} dicts, the
partitions placement.json gave its layer, or None); it is kept in
`proc_params["placement"]` and `virtual_addresses(proc)` gives it as lava's
`NcVirtualAddress` objects, the form Lava's Loihi 2 mapper works with.

Streams of several samples run back to back: `period` (the sample length
T; 0: one endless stream) and `offset` (the process's latency L) make a
process reset its state at each of its own sample boundaries, Lava step
s with (s - L) % T == 0, and count saturations only inside its valid window
[L, L + valid). Recordings (`record`) are written to `dump` (an .npy path)
on the last step, `steps`, because lava's Var.get sends arrays value by
value.
"""
from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.compiler.subcompilers.address import NcVirtualAddress
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from s4dc.targets.loihi2 import qssm
from s4dc.targets.loihi2.numerics import (BIAS_BITS, COUNTER_BITS, MAX_COEF_BITS, MESSAGE_BITS, SHIFT_PARAM_BITS,
                                          STATE_BITS, sat_count)

Placement = ty.Optional[ty.List[ty.Dict[str, ty.Any]]]


def virtual_addresses(proc: AbstractProcess) -> list[NcVirtualAddress]:
    """The (chip, core) pairs placement chose for `proc`, as lava addresses."""
    return [NcVirtualAddress(chip_id=int(p["chip"]), core_id=int(p["core"]))
            for p in proc.proc_params.get("placement") or []]


def _timing(steps: int, period: int, offset: int, valid: int) -> dict[str, int]:
    return {"steps": int(steps), "period": int(period), "offset": int(offset), "valid": int(valid)}


def _state_members(proc: AbstractProcess, ports: tuple[int, ...], shape: tuple[int, ...],
                   coefs: dict[str, ty.Any]) -> None:
    """What a neuron process with a complex state holds (S4dNeuron, MimoNeuron):
    its ports, one Var per coefficient, the state (xr, xi) and a saturation counter."""
    proc.a_in = InPort(shape=ports)
    proc.s_out = OutPort(shape=ports)
    for k, v in coefs.items():
        setattr(proc, k, Var(shape=shape, init=np.asarray(v)))
    proc.xr = Var(shape=shape, init=0)
    proc.xi = Var(shape=shape, init=0)
    proc.saturations = Var(shape=(1,), init=0)


class _Timed:
    """Shared step bookkeeping of our fixed-point models."""

    def _local(self) -> int:
        return self.time_step - 1 - self.proc_params["offset"]

    def _in_window(self, t: int) -> bool:
        return 0 <= t < self.proc_params["valid"]

    def _sample_start(self, t: int) -> bool:
        T = self.proc_params["period"]
        return T > 0 and t % T == 0 or t == 0

    def _count(self, t: int, n: int) -> None:
        """Add `n` saturations at local step `t` if it is inside the valid window."""
        if n and self._in_window(t):
            self.saturations[0] += n

    def _record(self, v: np.ndarray) -> None:
        if self.proc_params.get("dump"):
            self.record[:, self.time_step - 1] = v
            if self.time_step == self.proc_params["steps"]:
                np.save(self.proc_params["dump"], self.record)


class _StateStep(_Timed):
    """The step frame of our fixed-point neurons with a complex state (xr, xi):
    constants folded once (`_fold`, kept in `_k`), the state zeroed at each
    sample's first step, the new state kept, saturations counted, the
    messages sent as int64; and the Vars and ports every such model has, at
    their numerics widths (lava reads them with getattr, so a subclass
    inherits them)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=MESSAGE_BITS)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=MESSAGE_BITS)
    a_re: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=MAX_COEF_BITS)
    a_im: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=MAX_COEF_BITS)
    b_shift: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=SHIFT_PARAM_BITS)
    xr: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=STATE_BITS)
    xi: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=STATE_BITS)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=COUNTER_BITS)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)  # type: ignore[call-arg]  # PyLoihiProcessModel's, next in the MRO
        self._k: ty.Any = None

    def _fold(self) -> ty.Any:
        raise NotImplementedError

    def _begin(self) -> int:
        """This step's local time, after the start-of-sample reset."""
        if self._k is None:
            self._k = self._fold()
        t = self._local()
        if self._sample_start(t):
            self.xr[:] = 0
            self.xi[:] = 0
        return t

    def _finish(self, t: int, xr: np.ndarray, xi: np.ndarray, n: int, out: np.ndarray) -> None:
        self.xr, self.xi = xr.astype(np.int64), xi.astype(np.int64)
        self._count(t, n)
        self.s_out.send(out.astype(np.int64))


# --- source and sink -------------------------------------------------------------------
class MessageSource(AbstractProcess):
    """Sends column s of `data` (features, steps) at Lava step s (0-based),
    zeros after its end."""

    def __init__(self, *, data: np.ndarray, placement: Placement = None, name: str | None = None) -> None:
        super().__init__(data=data, placement=placement, name=name)
        self.s_out = OutPort(shape=data.shape[:1])
        self.data = Var(shape=data.shape, init=data)


class _SourceModel(PyLoihiProcessModel):
    def run_spk(self) -> None:
        s = self.time_step - 1
        self.s_out.send(self.data[:, s] if s < self.data.shape[1] else np.zeros_like(self.data[:, 0]))


@implements(proc=MessageSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMessageSourceFixed(_SourceModel):
    # int64 on the wire: lava's Dense accumulates in the sender's dtype, and
    # 8-bit weights x 24-bit messages x fan-in overflow int32.
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=MESSAGE_BITS)
    data: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=MESSAGE_BITS)


@implements(proc=MessageSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyMessageSourceFloat(_SourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    data: np.ndarray = LavaPyType(np.ndarray, float)


class MessageSink(AbstractProcess):
    """Records every step's input (features, steps); saves it to `dump` on
    the last step when given."""

    def __init__(self, *, shape: tuple[int, ...], steps: int, dump: str | None = None,
                 placement: Placement = None, name: str | None = None) -> None:
        super().__init__(shape=shape, steps=steps, dump=dump, placement=placement, name=name)
        self.a_in = InPort(shape=shape)
        self.data = Var(shape=shape + (steps,), init=0)


class _SinkModel(PyLoihiProcessModel):
    def run_spk(self) -> None:
        self.data[:, self.time_step - 1] = self.a_in.recv()
        if self.time_step == self.proc_params["steps"] and self.proc_params.get("dump"):
            np.save(self.proc_params["dump"], self.data)


@implements(proc=MessageSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMessageSinkFixed(_SinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=MESSAGE_BITS)
    data: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=MESSAGE_BITS)


@implements(proc=MessageSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyMessageSinkFloat(_SinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    data: np.ndarray = LavaPyType(np.ndarray, float)


# --- channel unit --------------------------------------------------------------------------
class Unit(AbstractProcess):
    """v = sat_msg(a_in + (bias_mant << bias_exp)); out = max(v, 0) if relu.

    a_in is the sum of every synapse connected to it (lava adds the inputs
    of an InPort). Stateless: the synapses deliver absolute values."""

    def __init__(self, *, shape: tuple[int, ...], bias_mant: np.ndarray | int = 0, bias_exp: int = 0,
                 relu: bool = False, message_bits: int = MESSAGE_BITS, steps: int = 0, period: int = 0,
                 offset: int = 0, valid: int = 0, dump: str | None = None, placement: Placement = None,
                 name: str | None = None) -> None:
        super().__init__(shape=shape, bias_exp=bias_exp, relu=relu, message_bits=message_bits,
                         dump=dump, placement=placement, name=name, **_timing(steps, period, offset, valid))
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.saturations = Var(shape=(1,), init=0)
        self.record = Var(shape=shape + ((steps,) if dump else (1,)), init=0)


@implements(proc=Unit, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyUnitFixed(_Timed, PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int64, precision=MESSAGE_BITS)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int64, precision=MESSAGE_BITS)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=BIAS_BITS)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=COUNTER_BITS)
    record: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=MESSAGE_BITS)

    def run_spk(self) -> None:
        p = self.proc_params
        v = self.a_in.recv() + (self.bias_mant << p["bias_exp"])
        self._count(self._local(), sat_count(v, p["message_bits"]))
        if p["relu"]:
            v = np.maximum(v, 0)
        self._record(v)
        self.s_out.send(v)


@implements(proc=Unit, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyUnitFloat(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=COUNTER_BITS)
    record: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        v = self.a_in.recv() + self.bias_mant * 2.0 ** self.proc_params["bias_exp"]
        self.s_out.send(np.maximum(v, 0.0) if self.proc_params["relu"] else v)


# --- the S4D neuron ------------------------------------------------------------------------
class S4dNeuron(AbstractProcess):
    """One neuron per complex state (shape (H*N,), channel-major), integer
    coefficients as in the IR's qssm layer (docs/fixed_point.md):

        xr, xi = sat_state(round((a x) 2^-a_frac + b u 2^-b_shift))
        out    = sat_msg(round_shift(c_re xr - c_im xi, c_shift))

    `a_in` is the channel's input message u, delivered per state by a
    one-to-one synapse. The `floating_pt` model runs the same dynamics on
    lambda = a 2^-a_frac, b 2^-b_shift, c 2^-c_shift without rounding or
    saturation, i.e. lava's `S4d` with a = lambda, b = b 2^-b_shift and
    c = c 2^-c_shift / 2 (lava's S4d doubles its output for conjugate folding;
    our c carries that factor)."""

    def __init__(self, *, shape: tuple[int, ...], a_re, a_im, b_re, b_im, c_re, c_im, b_shift, c_shift,
                 a_frac: int, state_bits: int = STATE_BITS, message_bits: int = MESSAGE_BITS, steps: int = 0, period: int = 0,
                 offset: int = 0, valid: int = 0, placement: Placement = None, name: str | None = None,
                 **extra: ty.Any) -> None:
        super().__init__(shape=shape, a_frac=a_frac, state_bits=state_bits, message_bits=message_bits,
                         placement=placement, name=name, **_timing(steps, period, offset, valid), **extra)
        _state_members(self, shape, shape, {"a_re": a_re, "a_im": a_im, "b_re": b_re, "b_im": b_im, "c_re": c_re,
                                            "c_im": c_im, "b_shift": b_shift, "c_shift": c_shift})


@implements(proc=S4dNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyS4dNeuronFixed(_StateStep, PyLoihiProcessModel):
    """docs/fixed_point.md's `qssm` state update and per-state message: the
    simulator's own step (`targets/loihi2/qssm.py`, `neuron_step`), on the
    int64 Vars converted to float64. That is exact: states and messages are
    24-bit integers and the coefficients 16-bit integers times powers of two,
    so every product and sum the step forms is an integer multiple of a
    power of two that float64 holds exactly (qssm.py's docstring has the
    argument), and the results convert back to int64 unchanged."""

    b_re: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=MAX_COEF_BITS)
    b_im: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=MAX_COEF_BITS)
    c_re: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=MAX_COEF_BITS)
    c_im: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=MAX_COEF_BITS)
    c_shift: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=SHIFT_PARAM_BITS)

    def _fold(self) -> qssm.Folded:
        p = self.proc_params
        return qssm.fold(self.a_re, self.a_im, self.b_re, self.b_im, self.c_re, self.c_im, self.b_shift,
                         self.c_shift, p["a_frac"], p["state_bits"], p["message_bits"])

    def run_spk(self) -> None:
        t = self._begin()
        u = self.a_in.recv().astype(np.float64)
        xr, xi, o, n = qssm.neuron_step(self._k, u, self.xr.astype(np.float64), self.xi.astype(np.float64))
        self._finish(t, xr, xi, n, o)


@implements(proc=S4dNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyS4dNeuronFloat(PyLoihiProcessModel):
    """lava's S4d dynamics on the dequantized coefficients (no rounding)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_re: np.ndarray = LavaPyType(np.ndarray, float)
    a_im: np.ndarray = LavaPyType(np.ndarray, float)
    b_re: np.ndarray = LavaPyType(np.ndarray, float)
    b_im: np.ndarray = LavaPyType(np.ndarray, float)
    c_re: np.ndarray = LavaPyType(np.ndarray, float)
    c_im: np.ndarray = LavaPyType(np.ndarray, float)
    b_shift: np.ndarray = LavaPyType(np.ndarray, float)
    c_shift: np.ndarray = LavaPyType(np.ndarray, float)
    xr: np.ndarray = LavaPyType(np.ndarray, float)
    xi: np.ndarray = LavaPyType(np.ndarray, float)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=COUNTER_BITS)

    def __init__(self, proc_params: dict) -> None:
        super().__init__(proc_params)
        self._state = None

    def run_spk(self) -> None:
        if self._state is None:
            fa = self.proc_params["a_frac"]
            self._a = (self.a_re + 1j * self.a_im) * 2.0 ** -fa
            self._b = (self.b_re + 1j * self.b_im) * 2.0 ** -self.b_shift
            self._c = (self.c_re + 1j * self.c_im) * 2.0 ** -self.c_shift / 2
            self._state = self.xr + 1j * self.xi
        inp = self.a_in.recv()
        # the same expression, in the same order, as lava.proc.s4d.models.S4dModel
        self._state = self._state * self._a + inp * self._b
        self.xr, self.xi = self._state.real.copy(), self._state.imag.copy()
        self.s_out.send(np.real(self._c * self._state * 2))
