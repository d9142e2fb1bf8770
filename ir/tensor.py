"""Tensors of the IR: what flows between layers.

Every tensor is per sample; the batch axis is implicit. A *sequence* tensor
has a time axis (one value vector per time step), a non-sequence tensor is
one vector per sample (after a time readout). `features` is the length of
the vector. `fmt` is the fixed-point format once a quantize pass set one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FixedPoint:
    """A signed fixed-point format: integer `bits` wide, value = int * 2**exp."""

    bits: int
    exp: int

    def to_json(self) -> dict[str, int]:
        return {"bits": self.bits, "exp": self.exp}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "FixedPoint":
        return cls(bits=int(d["bits"]), exp=int(d["exp"]))


@dataclass
class Tensor:
    name: str
    features: int
    sequence: bool = True
    dtype: str = "float32"
    fmt: FixedPoint | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "features": self.features,
            "sequence": self.sequence,
            "dtype": self.dtype,
        }
        if self.fmt is not None:
            d["fmt"] = self.fmt.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Tensor":
        fmt = FixedPoint.from_json(d["fmt"]) if d.get("fmt") else None
        return cls(name=d["name"], features=int(d["features"]), sequence=bool(d["sequence"]),
                   dtype=d.get("dtype", "float32"), fmt=fmt)
