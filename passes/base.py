"""Passes and flows.

A pass is `apply(graph, options) -> (graph, changes)`: it returns a new graph
(the input is left alone) and a small JSON-able dict saying what it changed.
`run_flow` runs a named list of passes, verifies the graph after each one and
keeps a log, as FINN's step list and hls4ml's named flows do.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from s4dc.ir.graph import Graph
from s4dc.ir.verify import verify

PassFn = Callable[[Graph, Any], "tuple[Graph, dict[str, Any]]"]
PASSES: dict[str, PassFn] = {}


def register(name: str) -> Callable[[PassFn], PassFn]:
    def deco(fn: PassFn) -> PassFn:
        PASSES[name] = fn
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


def run_flow(graph: Graph, names: list[str], options: Any, log: PassLog | None = None,
             after_each: Callable[[str, Graph], dict[str, Any] | None] | None = None) -> tuple[Graph, PassLog]:
    log = log if log is not None else PassLog()
    verify(graph)
    for name in names:
        t0 = time.perf_counter()
        graph, changes = PASSES[name](graph, options)
        verify(graph)
        seconds = time.perf_counter() - t0
        if after_each is not None:
            changes = {**changes, **(after_each(name, graph) or {})}
        log.records.append(PassRecord(name, changes, seconds))
    return graph, log
