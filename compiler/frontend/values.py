"""What an ONNX value is while the frontend lowers a graph.

- Const: a known array (initializers, folded constants).
- Sym: depends on the model input only through its *shape* (Shape -> ...
  -> Expand chains that build initial states or reshape targets). Kept as its
  value for two batch sizes, which is enough to tell the batch axis apart.
- Act: an activation, i.e. an IR tensor, with the axis labels of its ONNX
  layout: 'B' batch, 'T' time, 'F' features, '1' a singleton. A tensor with
  one feature may carry no 'F' label. `pad` is zero padding pending on the
  left of the time axis (from a Pad node, for the Conv that follows);
  `tail` the steps a Conv padded on the right computes past `time` (for
  the Slice that cuts them off: `nn.Conv1d(padding=k-1)` then `[..., :T]`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The two batch sizes Sym values are evaluated at.
PROBE_BATCHES = (2, 3)


@dataclass
class Const:
    value: np.ndarray


@dataclass
class Sym:
    values: tuple[np.ndarray, np.ndarray]


@dataclass
class Act:
    tensor: str
    axes: tuple[str, ...]
    features: int
    time: int
    pad: int = 0
    tail: int = 0

    def shape(self, batch: int) -> tuple[int, ...]:
        size = {"B": batch, "T": self.time + self.pad + self.tail, "F": self.features, "1": 1}
        return tuple(size[a] for a in self.axes)

    @property
    def padded(self) -> bool:
        """Whether its time axis is not yet the layer's: pending padding or a tail."""
        return bool(self.pad or self.tail)

    @property
    def sequence(self) -> bool:
        return "T" in self.axes

    def axis_of(self, label: str) -> int | None:
        """Index of `label`; for 'F' of a one-feature tensor, the last '1'."""
        if label in self.axes:
            return self.axes.index(label)
        if label == "F" and self.features == 1 and "1" in self.axes:
            return len(self.axes) - 1 - self.axes[::-1].index("1")
        return None

    def with_f(self) -> tuple[str, ...]:
        """Axes with the feature axis labelled, for one-feature tensors."""
        i = self.axis_of("F")
        if i is None or self.axes[i] == "F":
            return self.axes
        return self.axes[:i] + ("F",) + self.axes[i + 1:]


Value = Const | Sym | Act
