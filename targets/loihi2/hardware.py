"""Loihi 2 resource model: what a system of chips offers and what the pieces
of a mapped network cost in it (docs/hardware_model.md).

Everything the partition and place passes assume about the hardware lives in
`HardwareSpec`: the mesh, per-core limits, the per-item memory costs, and the
cost of moving a message one hop on a chip or across a chip-to-chip link.
Defaults come from public figures (../shared/reference.md); the numbers
nothing public pins down (the memory split, the per-item costs, the mesh
shape, the chip-link cost) are marked *assumed* here and in the docs, and
every one can be overridden from a JSON file or a dict:

    spec = load_spec("my_system.json", chips=4)     # file, then overrides
    spec = load_spec({"chip_link_cost": 8.0})
    spec.to_json()                                   # the full, validated spec

Impossible values raise `HardwareSpecError` naming the field; a network
that does not fit raises `ResourceError` naming the resource, what is
needed and what there is.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from s4dc.errors import S4dcError
from s4dc.targets.loihi2.numerics import BIAS_BITS, MESSAGE_BITS, BitWidths

SPEC_FORMAT = "s4dc-loihi2-hardware"
SPEC_VERSION = 1


class HardwareSpecError(S4dcError):
    """A hardware description with an unknown field or an impossible value."""


class ResourceError(S4dcError):
    """A network (or one unit of it) that the configured system cannot hold."""


class PlacementError(S4dcError):
    """Placement options that make no sense (budget, seed, a bad partitioning)."""


@dataclass(frozen=True)
class HardwareSpec:
    """A Loihi 2 system. Units: bytes, bits, messages per time step; costs are
    relative (one on-chip hop = `hop_cost`)."""

    # -- system ---------------------------------------------------------------
    chips: int = 1                       # chips in the system (--chips N)
    chip_grid: tuple[int, int] | None = None  # (columns, rows) of chips; None: near-square
    # -- chip -----------------------------------------------------------------
    cores_per_chip: int = 128            # neurocores per chip (Intel)
    mesh: tuple[int, int] = (16, 8)      # (x columns, y rows) of the core mesh: "8x16" read as 8 rows x 16
                                         # columns (*assumed*; docs/hardware_model.md, mesh orientation)
    # -- core -----------------------------------------------------------------
    neurons_per_core: int = 8192         # neurons one core updates (secondary source)
    memory_bytes_per_core: int = 196608  # 192 KB SRAM per core (Intel press)
    synapse_memory_bytes: int = 131072   # *assumed* split of the 192 KB: synapses ...
    neuron_memory_bytes: int = 49152     # ... neuron state and per-neuron parameters ...
    axon_memory_bytes: int = 16384       # ... and message routing (input and output axons)
    # -- per-item costs (*assumed*) ---------------------------------------------
    neuron_overhead_bits: int = 16       # per neuron: program / configuration index
    shift_bits: int = 8                  # per-neuron shift registers (S4D b_shift, c_shift)
    synapse_index_bits: int = 13         # per sparse synapse: target index (log2 8192)
    axon_in_bytes: int = 4               # per distinct source neuron a core receives from
    axon_out_bytes: int = 4              # per (neuron, destination core) a core sends to
    # -- network on chip ---------------------------------------------------------
    message_bits: int = MESSAGE_BITS     # graded spike payload (24 of a 32-bit packet)
    hop_cost: float = 1.0                # cost of one message crossing one on-chip mesh link
    chip_link_cost: float = 16.0         # cost of one message crossing one chip-to-chip link (*assumed*)
    router_load_weight: float = 1.0      # weight of the busiest router's load in the objective

    # ------------------------------------------------------------------------
    @property
    def cores(self) -> int:
        return self.chips * self.cores_per_chip

    @property
    def grid(self) -> tuple[int, int]:
        """(columns, rows) of the chip grid."""
        if self.chip_grid is not None:
            return tuple(self.chip_grid)  # type: ignore[return-value]
        cols = max(1, math.ceil(math.sqrt(self.chips)))
        return cols, math.ceil(self.chips / cols)

    def chip_xy(self, chip: int) -> tuple[int, int]:
        """Grid position of chip id `chip` (row-major ids)."""
        cols = self.grid[0]
        return chip % cols, chip // cols

    def core_xy(self, core: int) -> tuple[int, int]:
        """Mesh position of core index `core` within its chip (row-major, x fastest)."""
        return core % self.mesh[0], core // self.mesh[0]

    # -- per-item costs, in bits -----------------------------------------------
    def state_neuron_bits(self, bw: BitWidths) -> int:
        """One S4D state neuron (one complex state): re/im state, the six
        coefficients a, b, c (re, im), two shifts, overhead."""
        return 2 * bw.state + 2 * (bw.a + bw.b + bw.c) + 2 * self.shift_bits + self.neuron_overhead_bits

    def unit_neuron_bits(self, bw: BitWidths) -> int:
        """One sigma-delta unit (affine output, S4D channel, add, ReLU):
        accumulator (state width), last activation (message width), bias
        mantissa, overhead."""
        return bw.state + bw.message + BIAS_BITS + self.neuron_overhead_bits

    def dense_synapse_bits(self, bw: BitWidths) -> int:
        """One synapse of a dense block (affine weights): the mantissa only."""
        return bw.weight

    def sparse_synapse_bits(self, bw: BitWidths) -> int:
        """One synapse of a sparse list (S4D fan-out, sum, D path, add, ReLU):
        mantissa plus target index."""
        return bw.weight + self.synapse_index_bits

    # -- serialization --------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"format": SPEC_FORMAT, "format_version": SPEC_VERSION, **self._raw()}

    def replace(self, **changes: Any) -> HardwareSpec:
        return from_dict({**self._raw(), **changes}, "hardware spec")

    def _raw(self) -> dict[str, Any]:
        d = asdict(self)
        d["mesh"] = list(self.mesh)
        d["chip_grid"] = None if self.chip_grid is None else list(self.chip_grid)
        return d


DEFAULT = HardwareSpec()
_FIELDS = {f.name: f for f in fields(HardwareSpec)}
_INT_FIELDS = {"chips", "cores_per_chip", "neurons_per_core", "memory_bytes_per_core", "synapse_memory_bytes",
               "neuron_memory_bytes", "axon_memory_bytes", "neuron_overhead_bits", "shift_bits",
               "synapse_index_bits", "axon_in_bytes", "axon_out_bytes", "message_bits"}
_FLOAT_FIELDS = {"hop_cost", "chip_link_cost", "router_load_weight"}
# Generous upper limits: beyond them a value is a typo, not a system.
MAX_CHIPS = 4096
MAX_SYSTEM_CORES = 1 << 16


def _fail(where: str, name: str, msg: str) -> None:
    raise HardwareSpecError(f"{where}: field '{name}' {msg}")


def _as_int(where: str, name: str, v: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            _fail(where, name, f"must be an integer, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        _fail(where, name, f"= {v} is impossible: must be {lo} to {hi}" if hi is not None
              else f"= {v} is impossible: must be >= {lo}")
    return int(v)


def _as_float(where: str, name: str, v: Any, lo: float, strict: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        _fail(where, name, f"must be a finite number, got {v!r}")
    v = float(v)
    if v < lo or (strict and v == lo):
        _fail(where, name, f"= {v} is impossible: must be {'>' if strict else '>='} {lo}")
    return v


def _pair(where: str, name: str, v: Any) -> tuple[int, int]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        _fail(where, name, f"must be a pair [columns, rows], got {v!r}")
    return _as_int(where, f"{name}[0]", v[0], 1, 4096), _as_int(where, f"{name}[1]", v[1], 1, 4096)


def from_dict(d: dict[str, Any], where: str = "hardware spec") -> HardwareSpec:
    """A validated spec from a (possibly partial) dict; missing fields take
    the defaults. Unknown fields and impossible values raise
    HardwareSpecError naming the field."""
    if not isinstance(d, dict):
        raise HardwareSpecError(f"{where}: must be a JSON object of fields, got {type(d).__name__}")
    d = dict(d)
    if "format" in d and d.pop("format") != SPEC_FORMAT:
        raise HardwareSpecError(f"{where}: field 'format' must be '{SPEC_FORMAT}'")
    if "format_version" in d and d.pop("format_version") != SPEC_VERSION:
        raise HardwareSpecError(f"{where}: field 'format_version' must be {SPEC_VERSION}")
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise HardwareSpecError(f"{where}: unknown field(s) {', '.join(repr(u) for u in unknown)}; "
                                f"known: {', '.join(sorted(_FIELDS))}")
    vals: dict[str, Any] = _raw_defaults()
    vals.update(d)
    out: dict[str, Any] = {}
    for name in _INT_FIELDS:
        lo = 0 if name in ("neuron_overhead_bits", "shift_bits", "synapse_index_bits", "axon_in_bytes",
                           "axon_out_bytes") else 1
        hi = {"chips": MAX_CHIPS, "message_bits": 32, "neuron_overhead_bits": 1024, "shift_bits": 64,
              "synapse_index_bits": 64}.get(name)
        out[name] = _as_int(where, name, vals[name], lo, hi)
    for name in _FLOAT_FIELDS:
        out[name] = _as_float(where, name, vals[name], 0.0, strict=name != "router_load_weight")
    out["mesh"] = _pair(where, "mesh", vals["mesh"])
    out["chip_grid"] = None if vals["chip_grid"] is None else _pair(where, "chip_grid", vals["chip_grid"])

    # Consistency between fields.
    mx, my = out["mesh"]
    if mx * my != out["cores_per_chip"]:
        _fail(where, "mesh", f"{mx} x {my} = {mx * my} positions does not match cores_per_chip = "
                             f"{out['cores_per_chip']}")
    split = out["synapse_memory_bytes"] + out["neuron_memory_bytes"] + out["axon_memory_bytes"]
    if split > out["memory_bytes_per_core"]:
        _fail(where, "memory_bytes_per_core", f"= {out['memory_bytes_per_core']} is less than its split: "
              f"synapse {out['synapse_memory_bytes']} + neuron {out['neuron_memory_bytes']} + axon "
              f"{out['axon_memory_bytes']} = {split} bytes")
    if out["message_bits"] > MESSAGE_BITS:
        _fail(where, "message_bits", f"= {out['message_bits']}: Loihi 2 graded spikes carry at most "
                                     f"{MESSAGE_BITS} payload bits")
    if out["chip_link_cost"] < out["hop_cost"]:
        _fail(where, "chip_link_cost", f"= {out['chip_link_cost']} is below hop_cost = {out['hop_cost']}: a "
                                       "chip-to-chip link cannot be cheaper than an on-chip hop")
    if out["chip_grid"] is not None:
        gx, gy = out["chip_grid"]
        if gx * gy < out["chips"]:
            _fail(where, "chip_grid", f"{gx} x {gy} holds {gx * gy} chips, fewer than chips = {out['chips']}")
    if out["chips"] * out["cores_per_chip"] > MAX_SYSTEM_CORES:
        _fail(where, "chips", f"= {out['chips']} x {out['cores_per_chip']} cores is more than s4dc places "
                              f"({MAX_SYSTEM_CORES})")
    return HardwareSpec(**out)


def _raw_defaults() -> dict[str, Any]:
    return DEFAULT._raw()


def load_spec(source: HardwareSpec | dict | str | Path | None = None, **overrides: Any) -> HardwareSpec:
    """The hardware model: defaults, or a HardwareSpec, a dict of fields, or
    a JSON file of fields; then `overrides` (e.g. chips=4) on top. Options
    that are None are ignored, so CLI values can be passed straight in."""
    where = "hardware spec"
    if source is None:
        base: dict[str, Any] = {}
    elif isinstance(source, HardwareSpec):
        base = source._raw()
    elif isinstance(source, dict):
        base = dict(source)
    else:
        where = str(source)
        try:
            base = json.loads(Path(source).read_text())
        except OSError as e:
            raise HardwareSpecError(f"{where}: cannot read hardware file ({e.strerror or e})") from None
        except ValueError as e:
            raise HardwareSpecError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(base, dict):
        raise HardwareSpecError(f"{where}: must be a JSON object of fields")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(base, where)


__all__ = [
    "DEFAULT",
    "HardwareSpec",
    "HardwareSpecError",
    "PlacementError",
    "ResourceError",
    "from_dict",
    "load_spec",
]
