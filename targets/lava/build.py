"""Build and run the Lava process graph of a plan (needs lava-nc: .venv-lava).

    net = LavaNetwork(plan, messages)     # processes, connected; messages: (B, T, F) integers
    result = net.run()

Samples run back to back in one Lava run of B*T + max latency steps: each
process resets its state at its own sample boundary (see processes.py), so
sample k's stream never sees sample k-1's state, as in
FixedSimulator.run on a batch.
"""
from __future__ import annotations

import tempfile
import time as _time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.models import PyDelayDenseModelBitAcc, PyDenseModelBitAcc
from lava.proc.dense.process import DelayDense, Dense
from lava.proc.sparse.models import PyDelaySparseModelBitAcc, PySparseModelBitAcc
from lava.proc.sparse.process import DelaySparse, Sparse
from lava.utils.weightutils import SignMode

from s4dc.ir.ops import OUTPUT
from s4dc.targets.lava.errors import LavaRunError
from s4dc.targets.lava.plan import GroupSpec, LavaPlan, SynapseSpec
from s4dc.targets.lava.processes import (MessageSink, MessageSource, PyMessageSinkFixed, PyMessageSourceFixed,
                                         PyS4dNeuronFixed, PyUnitFixed, S4dNeuron, Unit)
from s4dc.targets.lava.processes_mimo import MimoNeuron, PyMimoNeuronFixed

# The fixed_pt models of every process we create. Lava's compiler finds a
# process's models by importing every module beside the process's module
# and its package's siblings, for each process; naming them here (the run
# config's {Process: ProcessModel} exceptions) skips that search and picks
# exactly lava's bit-accurate synapse models.
FIXED_MODELS = {Dense: PyDenseModelBitAcc, DelayDense: PyDelayDenseModelBitAcc,
                Sparse: PySparseModelBitAcc, DelaySparse: PyDelaySparseModelBitAcc,
                MessageSource: PyMessageSourceFixed, MessageSink: PyMessageSinkFixed,
                Unit: PyUnitFixed, S4dNeuron: PyS4dNeuronFixed, MimoNeuron: PyMimoNeuronFixed}


class LavaNetwork:
    """The processes of one plan for `batch` samples of `time` steps."""

    def __init__(self, plan: LavaPlan, messages: np.ndarray, *, trace: bool = False,
                 workdir: str | Path | None = None):
        messages = np.asarray(messages)
        if messages.ndim != 3:
            raise ValueError(f"messages must be (batch, time, features), got shape {messages.shape}")
        self.messages = messages.astype(np.int64)
        self.plan = plan
        self.batch, self.time = messages.shape[:2]
        self.steps = plan.steps(self.batch, self.time)
        self._tmp = tempfile.TemporaryDirectory(prefix="s4dc-lava-") if workdir is None else None
        self.workdir = Path(workdir or self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.trace = trace
        self.fast_select = True
        self.procs: dict[str, Any] = {}
        self.sinks: dict[str, tuple[MessageSink, Path]] = {}
        self.source: MessageSource | None = None
        self._source_group: GroupSpec | None = None
        for g in plan.groups.values():
            self.procs[g.name] = self._group(g)
        self.synapses = [self._synapse(s) for s in plan.synapses]
        for t in plan.host_tensors:
            gname = plan.tensor_group[t]
            if gname in self.sinks or plan.groups[gname].kind == "source":
                continue
            g = plan.groups[gname]
            path = self.workdir / f"sink_{len(self.sinks)}.npy"
            sink = MessageSink(shape=(g.size,), steps=self.steps, dump=str(path), name=f"{gname}.sink",
                               placement=None)
            self.procs[gname].s_out.connect(sink.a_in)
            self.sinks[gname] = (sink, path)

    @property
    def processes(self) -> int:
        return len(self.procs) + len(self.synapses) + len(self.sinks)

    # -- construction -------------------------------------------------------------
    def _timing(self, g: GroupSpec) -> dict[str, int]:
        return {"steps": self.steps, "period": self.time, "offset": g.latency, "valid": self.batch * self.time}

    def _group(self, g: GroupSpec):
        p = g.params
        if g.kind == "source":
            self._source_group = g
            B, T, F = self.messages.shape
            if F != g.size:
                raise ValueError(f"input has {F} features, the network {g.size}")
            data = np.ascontiguousarray(self.messages.transpose(2, 0, 1).reshape(F, B * T))
            self.source = MessageSource(data=data, placement=g.placement, name=g.name)
            return self.source
        if g.kind == "unit":
            dump = str(self.workdir / f"trace_{len(self.procs)}.npy") if self.trace else None
            return Unit(shape=(g.size,), bias_mant=p["bias_mant"], bias_exp=p["bias_exp"], relu=p["relu"],
                        message_bits=p["message_bits"], dump=dump, placement=g.placement, name=g.name,
                        **self._timing(g))
        if g.kind == "s4d":
            coef = {k: p[k] for k in ("a_re", "a_im", "b_re", "b_im", "c_re", "c_im", "b_shift", "c_shift")}
            return S4dNeuron(shape=(g.size,), **coef, a_frac=p["a_frac"], state_bits=p["state_bits"],
                             message_bits=p["message_bits"], channels=p["channels"],
                             states_per_channel=p["states_per_channel"], placement=g.placement, name=g.name,
                             **self._timing(g))
        if g.kind == "mimo":
            return MimoNeuron(modes=p["modes"], a_re=p["a_re"], a_im=p["a_im"], b_shift=p["b_shift"],
                              a_frac=p["a_frac"], x_shift=p["x_shift"], state_bits=p["state_bits"],
                              message_bits=p["message_bits"], placement=g.placement, name=g.name, **self._timing(g))
        raise AssertionError(g.kind)

    def _synapse(self, s: SynapseSpec):
        w, wexp, nwb = s.lava
        kw = dict(weight_exp=wexp, num_weight_bits=nwb, sign_mode=SignMode.MIXED,
                  num_message_bits=s.num_message_bits, name=s.name, placement=s.placement)
        if s.sparse:
            wm = csr_matrix(w)
            if s.delay:
                delays = csr_matrix(np.where(w != 0, s.delay, 0).astype(int))
                proc = DelaySparse(weights=wm, delays=delays, max_delay=s.delay, **kw)
            else:
                proc = Sparse(weights=wm, **kw)
        elif s.delay:
            proc = DelayDense(weights=w, delays=np.full(w.shape, s.delay, dtype=int), max_delay=s.delay, **kw)
        else:
            proc = Dense(weights=w, **kw)
        self.procs[s.src].s_out.connect(proc.s_in)
        proc.a_out.connect(self.procs[s.dst].a_in)
        return proc

    # -- running ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run once. Returns the integer streams the host reads, aligned to
        the simulator's time axis: {"tensors": {tensor: int64 (B, T, F)},
        "trace": {layer: ...} (with trace=True), "saturations": {layer: n},
        "steps", "startup_s" (compile, spawn, step 1), "run_s" and
        "s_per_step" (the other steps), "wall_s" (all, with stopping)}."""
        messages = self.messages
        cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=self._models() if self.fast_select else None)
        t0 = _time.perf_counter()
        started = False
        try:
            # one step first: Lava compiles, spawns its processes and runs step 1;
            # the rest is timed on its own (seconds per step, no start-up)
            self.source.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            started = True
            t1 = _time.perf_counter()
            if self.steps > 1:
                self.source.run(condition=RunSteps(num_steps=self.steps - 1), run_cfg=cfg)
            t2 = _time.perf_counter()
            sats = self._saturations()
        except Exception as e:  # lava reports failures of its worker processes as assorted exceptions
            raise LavaRunError(f"Lava run failed: {type(e).__name__}: {e}") from e
        finally:
            if started:
                self.source.stop()
        wall = _time.perf_counter() - t0
        out: dict[str, Any] = {"steps": self.steps, "startup_s": t1 - t0, "run_s": t2 - t1,
                               "s_per_step": (t2 - t1) / max(self.steps - 1, 1), "wall_s": wall,
                               "saturations": sats}
        streams = {g: self._load(path, self.plan.groups[g]) for g, (_, path) in self.sinks.items()}
        if self._source_group is not None:
            streams[self._source_group.name] = np.asarray(messages, np.int64)
        out["tensors"] = {t: streams[self.plan.tensor_group[t]] for t in self.plan.host_tensors}
        if self.trace:
            tr = {}
            for g in self.plan.groups.values():
                if g.kind == "unit":
                    tr[g.layer] = self._load(Path(self.procs[g.name].proc_params["dump"]), g)
                elif g.kind == "source":
                    tr[g.layer] = np.asarray(messages, np.int64)
            for l in self.plan.graph.layers:
                if l.is_(OUTPUT) and l.output in self.plan.tensor_group:
                    tr[l.name] = tr[self.plan.groups[self.plan.tensor_group[l.output]].layer]
            out["trace"] = tr
        return out

    def _models(self) -> dict:
        # keyed by process object: lava's compiler checks `proc in map` first
        models = {}
        for proc in list(self.procs.values()) + self.synapses + [s for s, _ in self.sinks.values()]:
            models[proc] = FIXED_MODELS[type(proc)]
        return models

    def _saturations(self) -> dict[str, int]:
        sats: dict[str, int] = {}
        for g in self.plan.groups.values():
            if g.kind in ("unit", "s4d", "mimo"):
                n = int(self.procs[g.name].saturations.get()[0])
                sats[g.layer] = sats.get(g.layer, 0) + n
        return sats

    def _load(self, path: Path, g: GroupSpec) -> np.ndarray:
        """A recorded (F, steps) stream as (B, T, F), shifted by the group's latency."""
        try:
            buf = np.load(path)
        except OSError as e:
            raise LavaRunError(f"Lava run left no recording for '{g.name}' ({e})") from None
        L, B, T = g.latency, self.batch, self.time
        return np.ascontiguousarray(buf[:, L:L + B * T].reshape(g.size, B, T).transpose(1, 2, 0))

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
