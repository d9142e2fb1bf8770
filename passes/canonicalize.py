"""Canonicalize: simplify the graph the frontend produced, to a fixpoint.

- drop identity affines (what Transpose-free BatchNorm/Mul chains can leave);
- fuse affine -> affine when the middle tensor has one reader and the fused
  weight is no larger than the two it replaces (no bottleneck is expanded),
  and no trained grid (QDQ, s4dc.Quant) rounds the middle tensor;
- fold the S4D skip term: add(ssm(u), diag(d) u + b) -> ssm with D += d,
  bias += b (also add(ssm(u), u) -> D += 1); the same for conv layers;
- lower a MIMO layer with no modes (a canonical P = 0 node, or a full Conv
  whose delayed taps are all zero, realized) to the affine D u + bias it is:
  a state with nothing in it has no neurons to partition;
- remove layers nothing reads.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from s4dc.ir.graph import Graph
from s4dc.ir.ops import ADD, AFFINE, INPUT, MIMO, OUTPUT

from s4dc.passes.base import PassContext, register


def _is_diag(w: np.ndarray) -> bool:
    return w.shape[0] == w.shape[1] and not np.any(w - np.diag(np.diag(w)))


def _drop_identity(g: Graph) -> int:
    for l in g.by_op(AFFINE):
        w = l.params["weight"]
        if w.shape[0] == w.shape[1] and np.array_equal(w, np.eye(w.shape[0])) and not l.params["bias"].any():
            if any(c.is_(OUTPUT) for c in g.consumers(l.output)) and g.producer(l.inputs[0]).is_(INPUT):
                continue  # keep input -> output models well formed
            g.rewire(l.output, l.inputs[0])
            g.remove(l)
            return 1
    return 0


def _fuse_affines(g: Graph) -> int:
    for second in g.by_op(AFFINE):
        first = g.producer(second.inputs[0])
        if first is None or not first.is_(AFFINE) or len(g.consumers(first.output)) != 1:
            continue
        if g.tensors[first.output].fmt is not None:
            continue  # a trained grid between them: the rounding there is part of the network
        w1, w2 = first.params["weight"], second.params["weight"]
        if w2.shape[0] * w1.shape[1] > w1.size + w2.size:
            continue
        second.params["weight"] = w2 @ w1
        second.attrs.pop("qat", None)  # the fused weights are off any trained grid
        second.params["bias"] = w2 @ first.params["bias"] + second.params["bias"]
        second.inputs = list(first.inputs)
        second.source = f"{first.source}+{second.source}".strip("+")
        g.remove(first)
        return 1
    return 0


def _fold_skip(g: Graph) -> int:
    for add in g.by_op(ADD):
        for i in (0, 1):
            sys_l = g.producer(add.inputs[i])
            other = add.inputs[1 - i]
            if sys_l is None or not sys_l.opdef.direct_term or len(g.consumers(sys_l.output)) != 1:
                continue
            if g.tensors[sys_l.output].fmt is not None:
                continue  # a trained grid on the ssm output: the add happens after its rounding
            u = sys_l.inputs[0]
            skip = g.producer(other)
            if other == u:
                d, b = np.ones(g.tensors[u].features), 0.0
            elif skip is not None and skip.is_(AFFINE) and skip.inputs[0] == u and _is_diag(skip.params["weight"]):
                d, b = np.diag(skip.params["weight"]), skip.params["bias"]
            else:
                continue
            sys_l.params["D"] = sys_l.params["D"] + d
            sys_l.params["bias"] = sys_l.params["bias"] + b
            sys_l.source = f"{sys_l.source}+{add.source}".strip("+")
            g.rewire(add.output, sys_l.output)
            g.remove(add)
            return 1
    return 0


def _stateless_to_affine(g: Graph) -> int:
    for l in g.by_op(MIMO):
        if np.shape(l.params["A"])[0] == 0:
            l.op = AFFINE.name
            l.params = {"weight": np.asarray(l.params["D"], np.float64), "bias": l.params["bias"]}
            l.attrs = {}
            return 1
    return 0


@register("canonicalize")
def apply(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    g = graph.copy()
    counts = {"identity_dropped": 0, "affines_fused": 0, "skips_folded": 0, "stateless_lowered": 0,
              "dead_removed": 0}
    while True:
        n = 0
        for key, fn in (("identity_dropped", _drop_identity), ("affines_fused", _fuse_affines),
                        ("skips_folded", _fold_skip), ("stateless_lowered", _stateless_to_affine)):
            k = fn(g)
            counts[key] += k
            n += k
        dead = g.remove_dead()
        counts["dead_removed"] += dead
        if n + dead == 0:
            break
    _renumber(g)
    return g, {k: v for k, v in counts.items() if v}


def _renumber(g: Graph) -> None:
    """Keep tensor declarations in step with the layers that remain."""
    used = {l.output for l in g.layers}
    for t in list(g.tensors):
        if t not in used:
            del g.tensors[t]



