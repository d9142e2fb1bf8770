"""The IR graph: layers in topological order and the tensors between them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from s4dc.ir.layer import Layer
from s4dc.ir.ops import INPUT, OUTPUT, OpDef
from s4dc.ir.tensor import Tensor

if TYPE_CHECKING:
    import networkx as nx


@dataclass
class Graph:
    """Layers are kept in a valid execution order (every input is written by
    an earlier layer). Exactly one layer has op 'input'; the 'output' layers
    are the model's outputs, in order."""

    name: str = "model"
    layers: list[Layer] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    # Facts about the source model that targets need (time length, ...).
    meta: dict = field(default_factory=dict)

    # -- lookup ---------------------------------------------------------
    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def producer(self, tensor: str) -> Layer | None:
        for l in self.layers:
            if l.output == tensor:
                return l
        return None

    def consumers(self, tensor: str) -> list[Layer]:
        return [l for l in self.layers if tensor in l.inputs]

    @property
    def input_layer(self) -> Layer:
        return next(l for l in self.layers if l.is_(INPUT))

    @property
    def output_layers(self) -> list[Layer]:
        return [l for l in self.layers if l.is_(OUTPUT)]

    def by_op(self, op: "OpDef | str") -> Iterator[Layer]:
        name = op if isinstance(op, str) else op.name
        return (l for l in self.layers if l.op == name)

    def on_chip(self, layer: Layer) -> bool:
        """Runs on Loihi 2 cores: an on-chip op on a sequence (after a time
        readout, layers run on the host)."""
        return layer.opdef.on_chip and self.tensors[layer.output].sequence

    def unique_name(self, base: str) -> str:
        taken = {l.name for l in self.layers} | set(self.tensors)
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    # -- editing --------------------------------------------------------
    def add(self, layer: Layer, out: Tensor) -> Layer:
        assert out.name == layer.output
        self.tensors[out.name] = out
        self.layers.append(layer)
        return layer

    def rewire(self, old: str, new: str) -> None:
        """Make every reader of tensor `old` read `new` instead."""
        for l in self.layers:
            l.inputs = [new if t == old else t for t in l.inputs]

    def remove(self, layer: Layer) -> None:
        self.layers.remove(layer)
        if not any(l.output == layer.output for l in self.layers):
            self.tensors.pop(layer.output, None)

    def remove_dead(self) -> int:
        """Drop layers whose output nothing reads and that are not outputs."""
        removed = 0
        while True:
            used = {t for l in self.layers for t in l.inputs}
            dead = [l for l in self.layers if not l.opdef.structural and l.output not in used]
            if not dead:
                return removed
            for l in dead:
                self.remove(l)
                removed += 1

    def copy(self) -> "Graph":
        return Graph(self.name, [l.copy() for l in self.layers],
                     {k: Tensor.from_json(t.to_json()) for k, t in self.tensors.items()},
                     dict(self.meta))

    def to_networkx(self) -> "nx.DiGraph":
        import networkx as nx  # loaded on use: `import s4dc.ir` stays light

        g = nx.DiGraph()
        for l in self.layers:
            g.add_node(l.name, op=l.op)
        for l in self.layers:
            for t in l.inputs:
                p = self.producer(t)
                if p is not None:
                    g.add_edge(p.name, l.name, tensor=t)
        return g

    def summary(self) -> str:
        lines = []
        for l in self.layers:
            t = self.tensors[l.output]
            shape = f"{t.features}{' x T' if t.sequence else ''}"
            extra = l.opdef.describe(l)
            lines.append(f"{l.name:<24} {l.op:<8} {','.join(l.inputs):<28} -> {shape}{extra}")
        return "\n".join(lines)
