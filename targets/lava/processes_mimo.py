"""The MIMO mode neuron as a Lava process (needs lava-nc: .venv-lava).

`MimoNeuron`: P neurons, one per complex mode of a `qmimo` layer
(docs/fixed_point.md). Its input port carries 2P values, the B synapses'
exact sums (real parts, then imaginary parts: one lava Dense of weights
[b_re; b_im]); its output port sends 2P graded spikes, the states' real and
imaginary parts as messages (into one Dense of weights [c_re, -c_im]).
The `fixed_pt` model is the simulator's step (`qssm.next_state`, the same
helper `targets/loihi2/qmimo.py` runs), on int64 Vars converted to float64,
exact by qssm.py's argument.
"""
from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from s4dc.targets.lava.processes import Placement, _state_members, _StateStep, _timing
from s4dc.targets.loihi2 import qssm
from s4dc.targets.loihi2.numerics import MESSAGE_BITS, STATE_BITS, qmax


class MimoNeuron(AbstractProcess):
    """P mode neurons; ports of 2P values (re block, then im block)."""

    def __init__(self, *, modes: int, a_re, a_im, b_shift, a_frac: int, x_shift: int = 0,
                 state_bits: int = STATE_BITS, message_bits: int = MESSAGE_BITS, steps: int = 0, period: int = 0,
                 offset: int = 0, valid: int = 0, placement: Placement = None, name: str | None = None) -> None:
        super().__init__(modes=modes, a_frac=a_frac, x_shift=x_shift, state_bits=state_bits,
                         message_bits=message_bits, placement=placement, name=name,
                         **_timing(steps, period, offset, valid))
        _state_members(self, (2 * modes,), (modes,), {"a_re": a_re, "a_im": a_im, "b_shift": b_shift})


@implements(proc=MimoNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMimoNeuronFixed(_StateStep, PyLoihiProcessModel):
    """docs/fixed_point.md's `qmimo` state update and state messages (its
    Vars and ports: _StateStep's; the synapses are lava Dense processes)."""

    def _fold(self) -> tuple[ty.Any, ...]:
        """Shifts folded into the coefficients (exact powers of two), and the state and message rails."""
        p = self.proc_params
        sa = 2.0 ** -float(p["a_frac"])
        s, m = float(qmax(p["state_bits"])), float(qmax(p["message_bits"]))
        return (self.a_re * sa, self.a_im * sa, 2.0 ** -self.b_shift.astype(np.float64), -s - 1.0, s, -m - 1.0, m)

    def run_spk(self) -> None:
        p = self.proc_params
        t = self._begin()
        ar, ai, sb, s_lo, s_hi, m_lo, m_hi = self._k
        acc = self.a_in.recv().astype(np.float64)
        P = ar.shape[0]
        nr, ni = qssm.next_state(ar, ai, self.xr.astype(np.float64), self.xi.astype(np.float64),
                                 acc[:P] * sb + 0.5, acc[P:] * sb + 0.5)
        xr, xi = qssm.saturate(nr, s_lo, s_hi), qssm.saturate(ni, s_lo, s_hi)
        n = np.count_nonzero(xr != nr) + np.count_nonzero(xi != ni)
        msg = np.concatenate([xr, xi])
        if p["x_shift"]:
            raw = np.floor(msg * 2.0 ** -p["x_shift"] + 0.5)
            msg = qssm.saturate(raw, m_lo, m_hi)
            n += np.count_nonzero(msg != raw)
        self._finish(t, xr, xi, n, msg)
