"""Partition: split every on-chip layer into parts that each fit one Loihi 2
neurocore, and count the messages per time step between parts.

    parts = partition(graph, spec)            # quantized graph (or float: default widths)
    parts.parts[0].memory_bytes, parts.edges[0].messages_per_step

How a layer maps (docs/hardware_model.md has the per-item costs):

- `qaffine` (affine): `out` sigma-delta units, each with a dense row of `in`
  synapses (the weights). Split by output rows only: each part holds whole
  rows, so the integer sum of every unit stays exact (docs/fixed_point.md).
  Every part needs every input, so each source neuron sends one message to
  each part of the layer.
- `qssm` (ssm): per channel h, N state neurons (one per complex state, with
  their a, b, c coefficients) and one channel unit (D path, bias, ReLU).
  Synapses, stored at the receiving core: the input fan-out u_h -> the N
  states (weight 1), a sum synapse of weight 1 from every state to the
  channel unit, and the D-path synapse u_h -> unit. A channel's states stay
  on the channel unit's core, so the per-state messages never leave the
  core; only when one channel alone does not fit a core is it split into
  state chunks that send their messages to the unit's core.
- `qmimo` (mimo): two dense stages. P mode neurons (one per complex mode,
  state neurons with their a coefficients), each with two dense rows of
  H_in synapses (b_re, b_im), named `LAYER/modes` in the parts; every mode
  sends two messages (re, im) per step. Then H_out output units with a dense
  row of 2P (C) + H_in (D) synapses each. Modes split over cores like dense
  units: with all-to-all B and C every mode part needs every input and
  every output part needs every mode, so the traffic depends on the number
  of parts, not on which modes share one (the mimo pass keeps a fixed order).
- `qadd` / `relu`: one unit per feature with 2 / 1 sparse synapses. (A float
  graph's `relu` after an affine or ssm is fused into it, as quantization
  does; quantized graphs already have it fused.)
- `input`, `readout`, `output` and the layers after a readout run on the
  host: they take no core; messages from and to the host are not counted
  (they cross the chip's host interface whatever the placement).

Split sizes: each layer gets the fewest parts whose balanced split (sizes
differ by at most one unit or channel) fits every per-core limit: fewest
parts minimizes the messages into all-to-all (dense) layers, which grow
with the number of destination parts, and balance evens the busiest core's
work. Output routing memory depends on the consumers' splits, so splits are
refined until every part fits. `spread={layer: k}` spreads a layer over more
cores than it needs; `partition_for` chooses those counts for an objective
(cores, latency, energy or energy x latency per token, by the cost model of
targets/loihi2/cost.py) within a latency and a core limit.

Messages per time step: with graded spikes every active neuron sends each
step, once to every core that holds a synapse from it. `activity` scales
that per source layer (a measured fraction of steps in which a unit's
message changed: a sigma-delta unit with a zero threshold sends only on a
change, so a ReLU unit resting at 0 is silent). Default 1.0: the worst
case, ReLU sparsity not assumed; `measure(graph, x)` gives it from a
bit-exact run on calibration data (the compiler does this). S4D state
neurons always count 1.0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from s4dc.errors import S4dcError
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.ops import INPUT, RELU, SSM
from s4dc.ir.tensor import Tensor
from s4dc.registry import Registry
from s4dc.targets.loihi2 import cost
from s4dc.targets.loihi2.hardware import HardwareSpec, PlacementError, ResourceError, load_spec
from s4dc.targets.loihi2.numerics import BitWidths

MAX_REFINE = 64  # rounds of split refinement (output routing memory) before giving up


@dataclass(frozen=True)
class Part:
    """One core's share of one layer."""

    id: int
    layer: str
    op: str
    channels: tuple[int, int]        # output units (channels) [lo, hi) of the layer in this part
    state_range: tuple[int, int] | None  # a split S4D channel: its states [lo, hi) here; else None
    has_units: bool                  # holds the layer's output units of `channels`
    neurons: int                     # all neurons (S4D states + units)
    state_neurons: int
    synapses: int
    memory: dict[str, int]           # bytes: neuron, synapse, axon
    synops_per_step: float           # synaptic operations per step (incoming messages x fan-out)
    # S4D states read by their channel's unit on this core: one synaptic op
    # each per step that is no edge (a MIMO layer's modes reach their units
    # over edges, counted in the units' part)
    local_readouts: int = 0

    @property
    def memory_bytes(self) -> int:
        return sum(self.memory.values())

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "layer": self.layer, "op": self.op, "channels": list(self.channels),
                             "neurons": self.neurons, "state_neurons": self.state_neurons,
                             "synapses": self.synapses, "memory_bytes": self.memory_bytes,
                             "memory": dict(self.memory), "synops_per_step": _num(self.synops_per_step)}
        if self.state_range is not None:
            d["state_range"] = list(self.state_range)
        return d


@dataclass(frozen=True)
class Edge:
    src: int
    dst: int
    messages_per_step: float
    neurons: int  # distinct source neurons with a synapse in dst (messages at activity 1)

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "messages_per_step": _num(self.messages_per_step)}


@dataclass
class Partitioning:
    graph_name: str
    spec: HardwareSpec
    parts: list[Part]
    edges: list[Edge]
    layers: list[dict[str, Any]] = field(default_factory=list)  # per on-chip layer: parts, binding limit
    activity: dict[str, float] = field(default_factory=dict)

    @property
    def n_parts(self) -> int:
        return len(self.parts)

    def neurons(self) -> int:
        return sum(p.neurons for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {"graph": self.graph_name, "parts": [p.to_json() for p in self.parts],
                "edges": [e.to_json() for e in self.edges], "layers": self.layers,
                "activity": {k: _num(v) for k, v in sorted(self.activity.items())}}


def _num(v: float) -> float | int:
    """JSON numbers that print the same everywhere: ints stay ints."""
    f = float(v)
    return int(f) if f.is_integer() else round(f, 6)


def _sig(v: float) -> float:
    """Six significant digits: small physical values (seconds, joules) print
    the same everywhere without losing their scale."""
    return float(f"{float(v):.6g}")


# ---------------------------------------------------------------------------
# The layer view: what each on-chip layer needs, independent of the split.
@dataclass
class _L:
    name: str
    op: str
    kind: str                 # dense | ssm | elementwise
    units: int                # output units (channels)
    bits: BitWidths
    fanin: int = 0            # dense: input features
    n_states: int = 0         # ssm: states per channel
    arity: int = 1            # elementwise: inputs per unit
    rows: int = 1             # dense: synapse rows per unit (a MIMO mode: b_re and b_im)
    msgs: int = 1             # messages each unit sends per step (a MIMO mode: re and im)
    state: bool = False       # units are state neurons (MIMO modes), not sigma-delta units
    of: str = ""              # the graph layer this stage belongs to, where it is not `name`
    sources: list[str | None] = field(default_factory=list)  # on-chip source layer per input (None: host)
    widths: list[int] = field(default_factory=list)  # dense: the fan-in each source gives (default: all of it)
    activity: float = 1.0


def _widths(l: Layer) -> BitWidths:
    b = l.attrs.get("bits")
    if isinstance(b, dict):
        return BitWidths(**{k: int(v) for k, v in b.items() if k in BitWidths.__dataclass_fields__})
    return BitWidths()


# Op -> how the partitioner sees one on-chip layer (its resource kind and
# sizes): dense synapses into units, S4D channels of state neurons, or
# elementwise units. A new on-chip op registers its view here.
LayerView = Callable[[Layer, Tensor, BitWidths, "list[str | None]"], _L]
PARTITION_OPS: Registry[LayerView] = Registry("partition")


@PARTITION_OPS.register("affine", "qaffine")
def _dense_view(l: Layer, t: Tensor, bw: BitWidths, srcs: list[str | None]) -> _L:
    w = l.params["weight"]
    return _L(l.name, l.op, "dense", int(w.shape[0]), bw, fanin=int(w.shape[1]), sources=srcs)


@PARTITION_OPS.register("ssm", "qssm")
def _ssm_view(l: Layer, t: Tensor, bw: BitWidths, srcs: list[str | None]) -> _L:
    if l.is_(SSM) and l.attrs.get("form") != "diagonal":
        raise PlacementError(f"{l.where()}: a dense state matrix cannot be partitioned; diagonalize "
                             "first (the float flow does)")
    a = l.params["A"] if l.is_(SSM) else l.params["a_re"]
    return _L(l.name, l.op, "ssm", int(a.shape[0]), bw, n_states=int(a.shape[1]), sources=srcs)


@PARTITION_OPS.register("mimo", "qmimo")
def _mimo_view(l: Layer, t: Tensor, bw: BitWidths, srcs: list[str | None]) -> list[_L]:
    """Two dense stages: the mode neurons (`LAYER/modes`), then the output units."""
    if l.op == "mimo" and l.attrs.get("form") != "diagonal":
        raise PlacementError(f"{l.where()}: a dense shared state matrix cannot be partitioned; diagonalize "
                             "first (the float flow does)")
    P = int((l.params["A"] if l.op == "mimo" else l.params["a_re"]).shape[0])
    h_in = int((l.params["B"] if l.op == "mimo" else l.params["b_re"]).shape[1])
    modes = _L(f"{l.name}/modes", l.op, "dense", P, bw, fanin=h_in, rows=2, msgs=2, state=True, sources=srcs,
               of=l.name)
    units = _L(l.name, l.op, "dense", int(t.features), bw, fanin=2 * P + h_in, sources=[modes.name] + srcs,
               widths=[2 * P, h_in])
    return [modes, units]


@PARTITION_OPS.register("relu", "add", "qadd")
def _elementwise_view(l: Layer, t: Tensor, bw: BitWidths, srcs: list[str | None]) -> _L:
    return _L(l.name, l.op, "elementwise", int(t.features), bw, arity=len(l.inputs), sources=srcs)


def _layers(graph: Graph) -> list[_L]:
    """On-chip layers in graph order, with their sources resolved through fused ReLUs."""
    producer = {l.output: l for l in graph.layers}
    consumers: dict[str, list[Layer]] = {}
    for l in graph.layers:
        for t in l.inputs:
            consumers.setdefault(t, []).append(l)
    alias: dict[str, str | None] = {}   # layer name -> layer owning its messages (None: host input)
    out: list[_L] = []
    for l in graph.layers:
        t = graph.tensors[l.output]
        if l.is_(INPUT):
            alias[l.name] = None
            continue
        if l.opdef.structural or not t.sequence or any(not graph.tensors[i].sequence for i in l.inputs):
            continue  # host side
        view = PARTITION_OPS.get(l.op)
        if view is None:
            raise PlacementError(f"{l.where()}: op '{l.op}' cannot be partitioned for Loihi 2 (partition runs "
                                 "after the float flow: affine, ssm, relu, add or their quantized forms)")
        srcs = [alias.get(producer[i].name) if i in producer else None for i in l.inputs]
        if l.is_(RELU):
            p = producer.get(l.inputs[0])
            if p is not None and p.opdef.fuses_relu and len(consumers.get(p.output, [])) == 1 \
                    and alias.get(p.name) == p.name:
                alias[l.name] = p.name  # fused into its producer (float graphs; quantize does the same)
                continue
        alias[l.name] = l.name
        v = view(l, t, _widths(l), srcs)
        out.extend(v if isinstance(v, list) else [v])  # a layer may be several stages (mimo)
    return out


# ---------------------------------------------------------------------------
# Resources of a candidate part.
_LIMITS = ("neurons", "neuron memory", "synapse memory", "axon memory")


def _cap(spec: HardwareSpec) -> dict[str, int]:
    return {"neurons": spec.neurons_per_core, "neuron memory": spec.neuron_memory_bytes * 8,
            "synapse memory": spec.synapse_memory_bytes * 8, "axon memory": spec.axon_memory_bytes * 8}


def _per_unit(spec: HardwareSpec, L: _L, dests: float) -> dict[str, float]:
    """Resources (neurons, bits) one unit (channel) of L costs in its part,
    `dests` destination cores per output unit."""
    bw = L.bits
    unit = spec.unit_neuron_bits(bw)
    out_axon = dests * spec.axon_out_bytes * 8
    if L.kind == "dense":
        return {"neurons": 1, "neuron memory": spec.state_neuron_bits(bw) if L.state else unit,
                "synapse memory": L.rows * L.fanin * spec.dense_synapse_bits(bw), "axon memory": L.msgs * out_axon}
    if L.kind == "ssm":
        n = L.n_states
        return {"neurons": n + 1, "neuron memory": n * spec.state_neuron_bits(bw) + unit,
                "synapse memory": (2 * n + 1) * spec.sparse_synapse_bits(bw),
                "axon memory": spec.axon_in_bytes * 8 + out_axon}
    return {"neurons": 1, "neuron memory": unit, "synapse memory": L.arity * spec.sparse_synapse_bits(bw),
            "axon memory": L.arity * spec.axon_in_bytes * 8 + out_axon}


def _fixed(spec: HardwareSpec, L: _L) -> dict[str, float]:
    """Resources a part of L costs whatever its size (dense: input axons)."""
    z = {k: 0.0 for k in _LIMITS}
    if L.kind == "dense":
        z["axon memory"] = L.fanin * spec.axon_in_bytes * 8
    return z


def _max_units(spec: HardwareSpec, L: _L, dests: float) -> tuple[int, str, dict[str, float]]:
    """Most units (channels) of L one core holds, the limit that binds, and
    the per-unit costs."""
    cap, per, fix = _cap(spec), _per_unit(spec, L, dests), _fixed(spec, L)
    best, binding = L.units, "all units fit"
    for k in _LIMITS:
        if per[k] <= 0:
            if fix[k] > cap[k]:
                return 0, k, per
            continue
        m = int((cap[k] - fix[k]) // per[k])
        if m < best:
            best, binding = m, k
    return max(best, 0), binding, per


def _state_chunk(spec: HardwareSpec, L: _L, dests: float) -> int:
    """Most states of one S4D channel a core holds together with the
    channel's unit, its N sum synapses and its remote-state axons (the
    conservative chunk size when one channel does not fit a core)."""
    bw, cap, n = L.bits, _cap(spec), L.n_states
    fixed = {"neurons": 1, "neuron memory": spec.unit_neuron_bits(bw),
             "synapse memory": (n + 1) * spec.sparse_synapse_bits(bw),
             "axon memory": (1 + n) * spec.axon_in_bytes * 8 + dests * spec.axon_out_bytes * 8}
    per = {"neurons": 1, "neuron memory": spec.state_neuron_bits(bw), "synapse memory": spec.sparse_synapse_bits(bw),
           "axon memory": spec.axon_out_bytes * 8}
    s = n
    for k in _LIMITS:
        if fixed[k] > cap[k]:
            return 0
        s = min(s, int((cap[k] - fixed[k]) // per[k]))
    return s


def _need_text(spec: HardwareSpec, L: _L, per: dict[str, float], binding: str) -> str:
    cap = _cap(spec)[binding]
    need = per[binding] + _fixed(spec, L)[binding]
    if binding == "neurons":
        return f"{int(need)} neurons, a core has {cap}"
    return f"{math.ceil(need / 8)} bytes of {binding}, a core has {cap // 8}"


def _balanced(n: int, k: int) -> list[tuple[int, int]]:
    """k contiguous ranges over n items, sizes differing by at most one (larger first)."""
    q, r = divmod(n, k)
    out, lo = [], 0
    for i in range(k):
        hi = lo + q + (1 if i < r else 0)
        out.append((lo, hi))
        lo = hi
    return out


# ---------------------------------------------------------------------------
def partition(graph: Graph, spec: HardwareSpec | dict | str | None = None, *,
              activity: dict[str, float] | None = None, spread: dict[str, int] | None = None,
              sparsity: dict[str, float] | None = None) -> Partitioning:
    """Split `graph`'s on-chip layers into parts that fit one core each
    (module doc). `activity`: optional {layer: fraction of steps its units
    send}, e.g. from `activity_from_trace`. `spread`: optional {layer: parts
    at least} to spread a layer over more cores than it needs (at most one
    unit per part; `partition_for` chooses them). `sparsity`: {layer:
    fraction of zero outputs}, recorded in the layer summary. Raises
    ResourceError when a single unit cannot fit a core."""
    spec = spec if isinstance(spec, HardwareSpec) else load_spec(spec)
    layers = _layers(graph)
    names = {l.name for l in graph.layers}
    act = dict(activity or {})
    for what, d in (("activity", act), ("sparsity", sparsity or {})):
        for name, v in d.items():
            if name not in names:
                raise PlacementError(f"{what} names '{name}', which is not a layer of '{graph.name}'")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise PlacementError(f"{what} of layer '{name}' = {v!r}: must be a fraction in [0, 1]")
    want = _requested_parts(layers, spread or {}, graph.name)
    for L in layers:
        L.activity = float(act.get(L.name, 1.0))
        if L.bits.message > spec.message_bits:
            raise ResourceError(f"message bits: layer '{L.name}' ({L.op}) sends {L.bits.message}-bit messages, "
                                f"the hardware's graded spikes carry {spec.message_bits} (message_bits)")
    dests = {L.name: 1.0 for L in layers}
    nparts: dict[str, int] = {}
    binding: dict[str, str] = {}
    for _ in range(MAX_REFINE):
        chunks: dict[str, int] = {}
        for L in layers:
            m, why, per = _max_units(spec, L, dests[L.name])
            if m >= 1:
                k = max(nparts.get(L.name, 0), math.ceil(L.units / m), want.get(L.name, 0))
                nparts[L.name], binding[L.name] = k, why
                continue
            if L.kind == "ssm":
                s = _state_chunk(spec, L, dests[L.name])
                if s >= 1:
                    chunks[L.name] = math.ceil(L.n_states / s)
                    nparts[L.name], binding[L.name] = L.units * chunks[L.name], f"{why} (channels split)"
                    continue
            raise ResourceError(f"layer '{L.name}' ({L.op}): one {'channel' if L.kind == 'ssm' else 'unit'} "
                                f"needs {_need_text(spec, L, per, why)}; it cannot be split further")
        parts, edges = _build(spec, layers, nparts, chunks)
        over = _overfull(spec, parts)
        if not over:
            break
        for name, ratio in over.items():
            L = next(x for x in layers if x.name == name)
            # more destinations per unit than assumed: assume what was seen
            seen = max((e_out / max(1, p.channels[1] - p.channels[0]))
                       for p, e_out in _axon_out_counts(parts, edges) if p.layer == name)
            if seen > dests[name]:
                dests[name] = seen
            else:
                nparts[name] = nparts[name] + 1
            if nparts[name] > L.units * max(1, chunks.get(name, 1)):
                raise ResourceError(f"layer '{name}' ({L.op}): its output routing does not fit even one unit "
                                    f"per core ({ratio})")
    else:
        raise ResourceError("partition: splits did not settle within the refinement limit; the hardware "
                            "limits are too tight for this network")
    summary = []
    for L in layers:
        ps = [p for p in parts if p.layer == L.name]
        row = {"layer": L.name, "op": L.op, "parts": len(ps), "units": L.units,
               "states_per_channel": L.n_states,
               # spread beyond the fewest parts that fit: the objective set the split, not a limit
               "binding": "spread (partition objective)" if len(ps) == want.get(L.name)
               and len(ps) > _fewest(spec, L, dests[L.name]) else binding[L.name],
               "activity": _num(L.activity)}
        if sparsity and L.name in sparsity:
            row["activation_sparsity"] = _num(sparsity[L.name])
        summary.append(row)
    return Partitioning(graph.name, spec, parts, edges, summary, {L.name: L.activity for L in layers})


def _requested_parts(layers: list[_L], spread: dict[str, int], graph_name: str) -> dict[str, int]:
    by = {L.name: L for L in layers}
    for k, v in spread.items():
        if k not in by:
            raise PlacementError(f"spread names '{k}', which is not an on-chip layer of '{graph_name}'")
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= by[k].units:
            raise PlacementError(f"spread of layer '{k}' = {v!r}: must be an integer from 1 to its "
                                 f"{by[k].units} units")
    return dict(spread)


def _fewest(spec: HardwareSpec, L: _L, dests: float) -> int:
    """The fewest parts of L that fit (for the summary's 'spread' note)."""
    m = _max_units(spec, L, dests)[0]
    return math.ceil(L.units / m) if m >= 1 else L.units


def _axon_out_counts(parts: list[Part], edges: list[Edge]) -> list[tuple[Part, int]]:
    out = [0] * len(parts)
    for e in edges:
        out[e.src] += e.neurons
    return [(p, out[p.id]) for p in parts]


def _overfull(spec: HardwareSpec, parts: list[Part]) -> dict[str, str]:
    cap = {"neuron": spec.neuron_memory_bytes, "synapse": spec.synapse_memory_bytes, "axon": spec.axon_memory_bytes}
    over: dict[str, str] = {}
    for p in parts:
        for k, c in cap.items():
            if p.memory[k] > c:
                over.setdefault(p.layer, f"part {p.id} needs {p.memory[k]} bytes of {k} memory, a core has {c}")
        if p.neurons > spec.neurons_per_core:
            over.setdefault(p.layer, f"part {p.id} needs {p.neurons} neurons, a core has {spec.neurons_per_core}")
    return over


@dataclass
class _Proto:
    layer: _L
    channels: tuple[int, int]
    state_range: tuple[int, int] | None
    has_units: bool


def _build(spec: HardwareSpec, layers: list[_L], nparts: dict[str, int],
           chunks: dict[str, int]) -> tuple[list[Part], list[Edge]]:
    protos: list[_Proto] = []
    by_layer: dict[str, list[int]] = {}
    for L in layers:
        ids = by_layer.setdefault(L.name, [])
        if L.name in chunks:
            for h in range(L.units):
                rs = _balanced(L.n_states, chunks[L.name])
                for j, r in enumerate(rs):
                    ids.append(len(protos))
                    protos.append(_Proto(L, (h, h + 1), r, j == len(rs) - 1))
        else:
            for r in _balanced(L.units, nparts[L.name]):
                ids.append(len(protos))
                protos.append(_Proto(L, r, None, True))
    # Edges: (src part, dst part) -> source neuron intervals.
    links: dict[tuple[int, int], list[tuple[int, int]]] = {}
    internal: dict[tuple[int, int], int] = {}
    fan_in: dict[int, float] = {}  # synaptic ops per step at the receiving part
    for L in layers:
        for src in L.sources:
            if src is None:
                continue
            for qi in by_layer[L.name]:
                q = protos[qi]
                if L.kind == "dense":
                    want = (0, None)
                else:
                    want = q.channels
                for pi in by_layer[src]:
                    p = protos[pi]
                    if not p.has_units:
                        continue
                    lo, hi = p.channels
                    if want[1] is not None:
                        lo, hi = max(lo, want[0]), min(hi, want[1])
                    if hi > lo:
                        links.setdefault((pi, qi), []).append((lo, hi))
        if L.name in chunks:  # split channels: state chunks -> the unit's part
            ids = by_layer[L.name]
            for qi in ids:
                q = protos[qi]
                if q.has_units:
                    h = q.channels[0]
                    for pi in ids:
                        p = protos[pi]
                        if pi != qi and p.channels[0] == h:
                            internal[(pi, qi)] = p.state_range[1] - p.state_range[0]
    edges: list[Edge] = []
    for (pi, qi), ivs in sorted(links.items()):
        src_layer = protos[pi].layer
        n = _union_len(ivs) * src_layer.msgs
        edges.append(Edge(pi, qi, n * src_layer.activity, n))
    for (pi, qi), n in sorted(internal.items()):
        edges.append(Edge(pi, qi, float(n), n))
    edges.sort(key=lambda e: (e.src, e.dst))
    # Synaptic work per step: each incoming message fans out over the synapses it reaches.
    for e in edges:
        q = protos[e.dst]
        if q.layer.kind == "dense":
            fan = (q.channels[1] - q.channels[0]) * q.layer.rows
        elif q.layer.kind == "ssm":
            fan = (q.state_range[1] - q.state_range[0] if q.state_range else q.layer.n_states) + \
                (1 if q.has_units else 0)
            if protos[e.src].layer is q.layer:
                fan = 1
        else:
            fan = 1
        fan_in[e.dst] = fan_in.get(e.dst, 0.0) + e.messages_per_step * fan
    axon_out = [0] * len(protos)
    axon_in = [0] * len(protos)
    for e in edges:
        axon_out[e.src] += e.neurons
        axon_in[e.dst] += e.neurons
    parts = []
    for i, q in enumerate(protos):
        L, bw = q.layer, q.layer.bits
        c = q.channels[1] - q.channels[0]
        unit_bits = spec.unit_neuron_bits(bw)
        if L.kind == "ssm":
            s = (q.state_range[1] - q.state_range[0]) if q.state_range else c * L.n_states
            units = c if q.has_units else 0
            neurons = s + units
            neuron_bits = s * spec.state_neuron_bits(bw) + units * unit_bits
            syn = s + units * (L.n_states + 1)   # fan-out per state; sum + D per unit
            syn_bits = syn * spec.sparse_synapse_bits(bw)
            ins = c if L.sources and L.sources[0] is None else 0  # host input still needs axons
        elif L.kind == "dense":
            neurons, neuron_bits = c, c * (spec.state_neuron_bits(bw) if L.state else unit_bits)
            syn = c * L.fanin * L.rows
            syn_bits = syn * spec.dense_synapse_bits(bw)
            ins = sum(w for s, w in zip(L.sources, L.widths) if s is None) if L.widths else \
                (L.fanin if any(s is None for s in L.sources) else 0)   # host inputs, each needing an axon
        else:
            neurons, neuron_bits = c, c * unit_bits
            syn, syn_bits = c * L.arity, c * L.arity * spec.sparse_synapse_bits(bw)
            ins = c * sum(1 for s in L.sources if s is None)
        axon_bytes = (axon_in[i] + ins) * spec.axon_in_bytes + axon_out[i] * spec.axon_out_bytes
        mem = {"neuron": math.ceil(neuron_bits / 8), "synapse": math.ceil(syn_bits / 8), "axon": axon_bytes}
        host_ops = 0.0
        if ins:
            # each host message reaches every synapse row of the part (a MIMO mode has two: re, im)
            host_ops = ins * (L.n_states + 1 if L.kind == "ssm" else (c * L.rows if L.kind == "dense" else 1))
        states = (q.state_range[1] - q.state_range[0]) if q.state_range else \
            (c * L.n_states if L.kind == "ssm" else (c if L.state else 0))
        parts.append(Part(i, L.name, L.op, q.channels, q.state_range, q.has_units, neurons, states, syn, mem,
                          fan_in.get(i, 0.0) + host_ops,
                          states if L.kind == "ssm" and q.has_units else 0))
    return parts, edges


def _union_len(ivs: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for lo, hi in sorted(ivs):
        if end is None or lo >= end:
            total += hi - lo
            end = hi
        elif hi > end:
            total += hi - end
            end = hi
    return total


def activity_from_trace(trace: dict[str, np.ndarray], threshold: int = 0) -> dict[str, float]:
    """Measured activity per layer from integer message traces (e.g.
    `FixedSimulator(graph).trace(x)`: layer -> (batch, time, features)): the
    fraction of (sample, step, unit) at which a sigma-delta unit with this
    threshold sends, i.e. its message changed by more than `threshold` since
    the previous step (the first step against 0). Pass the result of this
    for the on-chip layers as `partition(..., activity=...)`."""
    out: dict[str, float] = {}
    for name, v in trace.items():
        a = np.asarray(v)
        if a.ndim != 3 or a.dtype.kind not in "iu" or a.size == 0:
            continue
        prev = np.concatenate([np.zeros_like(a[:, :1]), a[:, :-1]], axis=1)
        out[name] = float(np.count_nonzero(np.abs(a - prev) > threshold)) / a.size
    return out


# ---------------------------------------------------------------------------
# Activity from data: what the network really sends on the calibration set.
@dataclass(frozen=True)
class Measured:
    """Per on-chip layer, from a bit-exact run: the fraction of (sample, step,
    unit) that send (`activity`) and that are zero (`sparsity`); for layers
    with a ReLU, the same after shifting every output down by the quantiles
    `SWEEP_QUANTILES` of its positive outputs (`sweep`)."""

    activity: dict[str, float]
    sparsity: dict[str, float]
    sweep: list[dict[str, Any]]
    samples: int
    steps: int
    relu: tuple[str, ...] = ()   # layers whose outputs pass a ReLU (the sweep varies these)


SWEEP_QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.97, 1.0)
MEASURE_SAMPLES = 16   # calibration sequences simulated for activity (the first ones: deterministic)


def measure(graph: Graph, x: np.ndarray, max_samples: int = MEASURE_SAMPLES) -> Measured:
    """Run the bit-exact simulator on the first `max_samples` calibration
    sequences and measure every on-chip layer's activity and sparsity.

    The sweep stands in for biasing each ReLU's input down by d (output
    max(0, y - d), exact for that layer alone); downstream layers keep their
    measured activity, so it is a first-order picture of more sparsity."""
    from s4dc.targets.fixed_sim import FixedSimulator

    on_chip = {L.name for L in _layers(graph)}
    relu = {l.name for l in graph.layers if l.name in on_chip and (l.is_(RELU) or l.attrs.get("relu"))}
    xs = np.asarray(x)[:max_samples]
    trace = {k: np.asarray(v) for k, v in FixedSimulator(graph).trace(xs).items() if k in on_chip}
    act = activity_from_trace(trace)
    spars = {k: float(np.count_nonzero(v == 0)) / v.size for k, v in trace.items() if k in act}
    sweep = []
    for q in SWEEP_QUANTILES:
        a, z = dict(act), dict(spars)
        for k in relu & set(act):
            v = trace[k]
            pos = v[v > 0]
            if q == 0.0 or pos.size == 0:
                continue
            d = int(np.quantile(pos, q, method="lower")) if q < 1.0 else int(pos.max())
            w = np.maximum(v - d, 0)
            a[k] = activity_from_trace({k: w})[k]
            z[k] = float(np.count_nonzero(w == 0)) / w.size
        sweep.append({"quantile": q, "activity": a, "sparsity": z})
    return Measured(act, spars, sweep, int(xs.shape[0]), int(xs.shape[1]) if xs.ndim > 1 else 0,
                    tuple(sorted(relu & set(act))))


# ---------------------------------------------------------------------------
# Partition for an objective: how many cores each layer gets.
class ConstraintError(S4dcError):
    """An objective or constraint (max latency, max cores) no split considered can meet."""


from s4dc.options import OBJECTIVES  # noqa: E402  (one list: the CLI choices)
MAX_CANDIDATES = 256   # splits considered at most (each is one partition() call)
_KEYS: dict[str, Callable[[dict[str, Any]], tuple[float, float]]] = {
    "cores": lambda c: (c["cores"], c["latency_per_token_s"]),
    "latency": lambda c: (c["latency_per_token_s"], c["cores"]),
    "energy": lambda c: (c["energy_per_token_j"], c["cores"]),
    "edp": lambda c: (c["edp_js"], c["cores"])}


def cost_parts(P: Partitioning) -> list[dict[str, Any]]:
    """Parts as the cost model takes them: each S4D state's synapse to its
    channel unit on the same core is a synaptic op that is no edge."""
    return [{"id": p.id, "neurons": p.neurons, "state_neurons": p.state_neurons,
             "synops": p.synops_per_step + p.local_readouts}
            for p in P.parts]


def depth_steps(graph: Graph) -> int:
    """Pipeline depth of the on-chip layers (synapse stages), as the report counts it."""
    d = cost.depths((l.name, l.op, list(l.inputs), l.output) for l in graph.layers)
    return max((d[L.of or L.name] for L in _layers(graph)), default=0)


def estimate(P: Partitioning, depth: int) -> dict[str, Any]:
    """The cost model's estimate of a partitioning before placement."""
    edges = [(e.src, e.dst, e.messages_per_step) for e in P.edges]
    return cost.estimate_unplaced(cost_parts(P), edges, P.spec.to_json(), depth)


def _candidate(P: Partitioning, depth: int) -> dict[str, Any]:
    est = estimate(P, depth)
    return {"cores": P.n_parts, "parts": {r["layer"]: r["parts"] for r in P.layers},
            "time_per_step_s": est["time_per_step_s"], "latency_per_token_s": est["latency_per_token_s"],
            "energy_per_token_j": est["energy_per_token_j"],
            "edp_js": est["energy_per_token_j"] * est["latency_per_token_s"], "bound_by": est["bound_by"],
            "busiest_part": est["busiest_part"]}


def spread_of(P: Partitioning) -> dict[str, int]:
    """The part counts that reproduce P's split with `partition(spread=...)`
    (layers whose channels are split into state chunks are set by fit alone)."""
    return {r["layer"]: r["parts"] for r in P.layers if "channels split" not in str(r["binding"])}


def _argbest(idx: list[int], cands: list[dict[str, Any]], objective: str) -> int:
    """The index in idx of the best candidate by the objective (ties: fewer cores, then the first)."""
    key = _KEYS[objective]
    return min(idx, key=lambda j: key(cands[j]))


def _next_count(units: int, k: int) -> int | None:
    """The next part count above k that lowers the largest part (balanced splits)."""
    biggest = math.ceil(units / k)
    for k2 in range(k + 1, units + 1):
        if math.ceil(units / k2) < biggest:
            return k2
    return None


def partition_for(graph: Graph, spec: HardwareSpec | dict | str | None = None, *, objective: str = "cores",
                  max_latency_us: float | None = None, max_cores: int | None = None,
                  activity: dict[str, float] | None = None, sparsity: dict[str, float] | None = None,
                  max_candidates: int = MAX_CANDIDATES) -> tuple[Partitioning, dict[str, Any]]:
    """Choose how many cores each layer gets for `objective` (cores, latency,
    energy, edp per token) within `max_latency_us` and `max_cores`.

    The splits considered start from the fewest cores (each layer's fewest
    parts that fit) and, one at a time, spread the layer holding the slowest
    core over the next part count that shrinks its largest part, until the
    system's cores (or max_cores) run out or that layer is one unit per part.
    Each split is costed before placement (`estimate`); the choice is the best
    by the objective among those meeting the constraints (ties: fewer cores),
    or a ConstraintError says what the best considered split reaches.
    Returns the chosen partitioning and the search (every split, the choice)."""
    if objective not in OBJECTIVES:
        raise ConstraintError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if max_cores is not None and (isinstance(max_cores, bool) or not isinstance(max_cores, int) or max_cores < 1):
        raise ConstraintError(f"max_cores must be a positive integer, got {max_cores!r}")
    if max_latency_us is not None and not (isinstance(max_latency_us, (int, float)) and max_latency_us > 0):
        raise ConstraintError(f"max_latency_us must be > 0, got {max_latency_us!r}")
    hw = spec if isinstance(spec, HardwareSpec) else load_spec(spec)
    depth = depth_steps(graph)
    limit = min(hw.cores, max_cores or hw.cores)
    P = partition(graph, hw, activity=activity, sparsity=sparsity)
    if max_cores is not None and P.n_parts > max_cores:
        raise ConstraintError(f"max_cores {max_cores}: the network needs at least {P.n_parts} cores (each "
                              "layer's fewest parts that fit a core)")
    found: list[tuple[Partitioning, dict[str, Any]]] = [(P, _candidate(P, depth))]
    while len(found) < max_candidates:
        P, c = found[-1]
        if c["busiest_part"] is None:
            break
        slow: str = P.parts[c["busiest_part"]].layer   # the layer holding the slowest core
        row = next(r for r in P.layers if r["layer"] == slow)
        if "channels split" in str(row["binding"]):
            break
        k2 = _next_count(row["units"], row["parts"])
        if k2 is None:
            break
        nxt = partition(graph, hw, activity=activity, sparsity=sparsity, spread={**spread_of(P), slow: k2})
        if nxt.n_parts > limit:
            break
        found.append((nxt, _candidate(nxt, depth)))
    cands = [c for _, c in found]
    for c in cands:
        c["meets"] = c["cores"] <= limit and (max_latency_us is None
                                              or c["latency_per_token_s"] <= max_latency_us * 1e-6)
    ok = [i for i, c in enumerate(cands) if c["meets"]]
    if not ok and cands[0]["cores"] > hw.cores:
        ok = [0]   # the system is too small for any split: place() refuses it, naming the chips needed
    if not ok:
        i = _argbest(list(range(len(cands))), cands, "latency")
        raise ConstraintError(f"max_latency_us {max_latency_us:g}: the lowest modelled latency per token among "
                              f"the {len(cands)} splits considered is {cands[i]['latency_per_token_s'] * 1e6:.3g} us "
                              f"(on {cands[i]['cores']} cores, at most {limit}); allow more latency or more cores")
    best = {o: _argbest(ok, cands, o) for o in OBJECTIVES}
    chosen = best[objective]
    search = {"objective": objective, "max_latency_us": max_latency_us, "max_cores": max_cores,
              "cores_limit": limit, "depth_steps": depth, "chosen": chosen, "best": best,
              "candidates": [{k: (_sig(v) if isinstance(v, float) else v) for k, v in c.items()} for c in cands],
              "model": "targets/loihi2/cost.py estimate before placement (expected hops, first-come chips)"}
    return found[chosen][0], search


def sparsity_sweep(graph: Graph, spec: HardwareSpec, spread: dict[str, int], m: Measured) -> list[dict[str, Any]]:
    """Modelled energy and latency per token of one split as each ReLU
    layer's activity follows `m.sweep`; sparsity and activity are means over
    the ReLU layers' outputs (weighted by units)."""
    depth = depth_steps(graph)
    units = {L.name: L.units for L in _layers(graph) if L.name in m.relu}
    tot = sum(units.values())

    def mean(d: dict[str, float]) -> float:
        return sum(d[k] * u for k, u in units.items()) / tot if tot else 0.0

    out = []
    for s in m.sweep:
        est = estimate(partition(graph, spec, activity=s["activity"], spread=spread), depth)
        out.append({"quantile": s["quantile"], "mean_sparsity": _sig(mean(s["sparsity"])),
                    "mean_activity": _sig(mean(s["activity"])),
                    "energy_per_token_j": _sig(est["energy_per_token_j"]),
                    "latency_per_token_s": _sig(est["latency_per_token_s"])})
    return out


__all__ = ["ConstraintError", "Edge", "Measured", "OBJECTIVES", "Part", "Partitioning", "activity_from_trace",
           "cost_parts", "depth_steps", "estimate", "measure", "partition", "partition_for", "sparsity_sweep",
           "spread_of"]
