"""Passes, their context, their declared requirements, and flows.

A pass is `apply(graph, ctx) -> (graph, changes)`: it returns a new graph
(the input is left alone) and a small JSON-able dict saying what it changed.
It is registered with the graph properties it requires (TVM's
`PassInfo.required`, hls4ml's `Flow(requires=)`), and every call checks
them first: a pass never runs on a graph it was not written for (the
quantizer on an unfolded state space would double its output). `run_flow`
runs a named list of passes, verifies the graph after each one and keeps a
log, as FINN's step list and hls4ml's named flows do.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import numpy as np

from s4dc.errors import InternalError, S4dcError, first_line
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.ops import CONV, MIMO, SSM
from s4dc.ir.verify import verify
from s4dc.options import CompileOptions
from s4dc.registry import Registry


class PassPreconditionError(S4dcError):
    """A pass was given a graph without a property it requires."""


@dataclass
class PassContext:
    """What passes read besides the graph: the compile options and what
    the compile gathered for them (calibration inputs, per-layer widths)."""

    options: CompileOptions = field(default_factory=CompileOptions)
    calibration_x: np.ndarray | None = None  # (n, time, features) float, for quantization
    calibration_note: str = ""               # where calibration_x came from (for progress and the manifest)
    precision: dict[str, Any] | None = None  # layer name (or "__default__") -> BitWidths
    config: dict[str, Any] | None = None     # the precision config as read (s4dc.precision), resolved
                                             # into `precision` against the graph the quantizer gets
    progress: Callable[[str], None] = field(default=lambda msg: None, repr=False)
    # What mapping steps leave for the compile to write (placement.json's document).
    results: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, ctx: Any) -> "PassContext":
        """A PassContext from what a caller passed: itself, None (defaults),
        or any object with some of the context's or the options' names as
        attributes (tests and scripts pass a SimpleNamespace)."""
        if isinstance(ctx, PassContext):
            return ctx
        if ctx is None:
            return cls()
        opt_names = {f.name for f in fields(CompileOptions)}
        given = {k: v for k, v in vars(ctx).items() if k in opt_names}
        return cls(options=replace(CompileOptions(), **given), calibration_x=getattr(ctx, "calibration_x", None),
                   precision=getattr(ctx, "precision", None), config=getattr(ctx, "config", None))


# --- graph properties a pass can require -------------------------------------------
# Each returns the first layer that breaks the property and why, or None.
Check = Callable[[Graph], "tuple[Layer, str] | None"]
PROPERTIES: Registry[Check] = Registry("graph property")


def _first(graph: Graph, bad: Callable[[Layer], bool], why: str) -> tuple[Layer, str] | None:
    return next(((l, why) for l in graph.layers if bad(l)), None)


PROPERTIES.add("realized", lambda g: _first(
    g, lambda l: l.is_(CONV), "is a convolution (the realize pass turns it into a state space)"))
PROPERTIES.add("diagonal", lambda g: _first(
    g, lambda l: l.is_(SSM) and l.attrs.get("form") != "diagonal", "has a dense state matrix (diagonalize first)"))
PROPERTIES.add("discrete", lambda g: _first(
    g, lambda l: l.is_(SSM) and l.attrs.get("time") != "discrete", "is continuous-time (discretize first)"))
PROPERTIES.add("folded", lambda g: _first(
    g, lambda l: l.is_(SSM) and not l.attrs.get("folded"),
    "keeps both modes of each conjugate pair (fold_conjugates first)"))
PROPERTIES.add("mimo_realized", lambda g: _first(
    g, lambda l: l.op == "mconv", "is a full convolution (the realize pass turns it into a MIMO state space)"))
PROPERTIES.add("mimo_diagonal", lambda g: _first(
    g, lambda l: l.is_(MIMO) and l.attrs.get("form") != "diagonal",
    "has a dense shared state matrix (diagonalize first)"))
PROPERTIES.add("mimo_discrete", lambda g: _first(
    g, lambda l: l.is_(MIMO) and l.attrs.get("time") != "discrete", "is continuous-time (discretize first)"))
PROPERTIES.add("float", lambda g: _first(g, lambda l: l.opdef.quantized, "is already quantized"))
PROPERTIES.add("quantized", lambda g: _first(
    g, lambda l: g.on_chip(l) and l.opdef.quantizable, "is an on-chip float layer (quantize first)"))


PassFn = Callable[[Graph, PassContext], "tuple[Graph, dict[str, Any]]"]


@dataclass(frozen=True)
class PassInfo:
    name: str
    fn: PassFn
    requires: tuple[str, ...] = ()

    def check(self, graph: Graph) -> None:
        for prop in self.requires:
            broken = PROPERTIES[prop](graph)
            if broken is not None:
                layer, why = broken
                raise PassPreconditionError(f"pass '{self.name}' needs a {prop} graph: {layer.where()} {why}")

    def __call__(self, graph: Graph, ctx: Any = None) -> tuple[Graph, dict[str, Any]]:
        self.check(graph)
        try:
            return self.fn(graph, PassContext.coerce(ctx))
        except (S4dcError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:  # a bug: one line for library users too, the cause chained for --debug
            raise InternalError(f"pass '{self.name}': internal error in s4dc (a bug; please report it): "
                                f"{type(e).__name__}: {first_line(e)}") from e


PASSES: Registry[PassInfo] = Registry("pass")


def register(name: str, requires: tuple[str, ...] = ()) -> Callable[[PassFn], PassFn]:
    for prop in requires:
        if prop not in PROPERTIES:
            raise KeyError(f"pass '{name}' requires unknown property '{prop}'")

    def deco(fn: PassFn) -> PassFn:
        PASSES.add(name, PassInfo(name, fn, tuple(requires)))
        return fn
    return deco


@dataclass
class PassRecord:
    name: str
    changes: dict[str, Any]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        # Times vary run to run; they are kept apart (timings.json) so that the
        # rest of a compiled network stays byte-for-byte deterministic.
        return {"pass": self.name, "changes": self.changes}


@dataclass
class PassLog:
    records: list[PassRecord] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.records]

    def timings(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, r in enumerate(self.records):
            out[f"{i:02d}_{r.name}"] = round(r.seconds, 6)
        return out


def run_flow(graph: Graph, names: list[str], ctx: Any = None, log: PassLog | None = None,
             after_each: Callable[[str, Graph], dict[str, Any] | None] | None = None) -> tuple[Graph, PassLog]:
    log = log if log is not None else PassLog()
    ctx = PassContext.coerce(ctx)
    verify(graph)
    for name in names:
        t0 = time.perf_counter()
        graph, changes = PASSES[name](graph, ctx)
        verify(graph)
        seconds = time.perf_counter() - t0
        if after_each is not None:
            changes = {**changes, **(after_each(name, graph) or {})}
        log.records.append(PassRecord(name, changes, seconds))
    return graph, log
