"""Layers of the IR: one operation, its parameters and attributes.

A layer reads named tensors and writes exactly one. `params` hold arrays
(weights, state matrices); `attrs` hold JSON-able settings. `source` names the
ONNX node(s) the layer came from, so errors and traces can point back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from s4dc.ir.ops import OpDef


@dataclass
class Layer:
    name: str
    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""

    def copy(self) -> "Layer":
        return Layer(self.name, self.op, list(self.inputs), self.output,
                     dict(self.attrs), {k: v.copy() for k, v in self.params.items()},
                     self.source)

    @property
    def opdef(self) -> "OpDef":
        """This layer's op definition (traits, typing rule); see s4dc.ir.ops."""
        from s4dc.ir.ops import op_def
        return op_def(self.op)

    def is_(self, op: "OpDef") -> bool:
        return self.op == op.name

    def where(self) -> str:
        """How error messages name this layer."""
        return f"layer '{self.name}' ({self.op}{', from ' + self.source if self.source else ''})"
