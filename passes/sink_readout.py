"""Sink readouts: move affine layers that follow a time readout in front of it.

readout(x) then W.+b equals W.+b on every step then readout, for both 'last'
and 'mean' (both are linear in time). Moved in front, the decoder runs on the
chip in integers and the host only picks the last step or averages the
output messages; what cannot move (a ReLU after a mean) stays on the host.
"""
from __future__ import annotations

from typing import Any

from s4dc.ir.graph import Graph
from s4dc.passes.base import PassContext, register
from s4dc.ir.ops import AFFINE, READOUT


@register("sink_readout", requires=("float",))
def apply(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    g = graph.copy()
    moved = []
    changed = True
    while changed:
        changed = False
        for ro in list(g.by_op(READOUT)):
            readers = g.consumers(ro.output)
            if len(readers) != 1 or not readers[0].is_(AFFINE):
                continue
            aff = readers[0]
            # swap: src -> affine -> readout -> (readers of the affine)
            src = ro.inputs[0]
            aff_t, ro_t = g.tensors[aff.output], g.tensors[ro.output]
            g.rewire(aff.output, ro.output)
            aff.inputs = [src]
            ro.inputs = [aff.output]
            aff_t.sequence = True
            ro_t.features = aff_t.features
            i, j = g.layers.index(ro), g.layers.index(aff)
            g.layers[i], g.layers[j] = aff, ro
            moved.append(aff.name)
            changed = True
    return g, ({"moved_before_readout": moved} if moved else {})
