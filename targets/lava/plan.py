"""The Lava mapping of a quantized network, as plain data (no lava import).

`plan(graph)` turns a quantized IR graph (docs/fixed_point.md) into neuron
groups and synapses with Lava's integer encodings, the time-step latency of
every group, and checks that Lava can hold it. `s4dc.targets.lava.build`
turns a plan into Lava processes; the main environment uses the plan alone
to fail early (LavaMappingError) and to report latencies.

Mapping (docs/lava.md):

    input    -> MessageSource (host -> chip messages)
    qaffine  -> Dense (weights, weight_exp)             -> Unit (bias, sat, ReLU)
    qssm     -> Sparse (expand u: one per state)        -> S4dNeuron (H*N)
                                                         -> Sparse (sum: weight 1) -> Unit
                DelaySparse (D path: d, d_shift, delay 1) -----------------------> Unit
    qadd     -> Sparse/DelaySparse per input (weight 1, shift; the shorter branch delayed)
                                                         -> Unit (sat)
    relu     -> Sparse (identity)                        -> Unit (ReLU)
    qmimo    -> Dense (B sums: [b_re; b_im], exact)      -> MimoNeuron (P modes, 2P ports)
                                                         -> Dense ([c_re, -c_im], c_shift) -> Unit
                DelayDense (D path: d, d_shift, delay 1) ------------------------------> Unit
    output / host layers: MessageSink on the producing group (no synapse)

Every synapse adds one time step (lava's Dense and Sparse send the previous
step's accumulation), a delayed one `d` more. A group's *latency* L says: its output
at Lava step s (0-based) is the simulator's value at time t = s - L.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.registry import Registry
from s4dc.targets.lava.errors import LavaMappingError
from s4dc.targets.loihi2.numerics import MAX_WEIGHT_BITS, MESSAGE_BITS, STATE_BITS

# Loihi 2 synaptic delays: 6 bits (lava's DelayDense refuses more than 63).
MAX_SYNAPSE_DELAY = 63
# lava's bit-accurate Dense keeps its output buffer in int32.
DENSE_OUT_LIMIT = (1 << 31) - 1


def lava_weights(w: np.ndarray, bits: int, shift: int) -> tuple[np.ndarray, int, int]:
    """Our synapse (integer weights w of `bits` bits, then `>> shift`) as
    lava Dense's encoding: (weights, weight_exp, num_weight_bits).

    lava's bit-accurate Dense in sign mode MIXED clips weights to [-256, 255]
    and drops the 8 - num_weight_bits + 1 low bits: a `bits`-bit mantissa
    w is stored as w * 2^(9 - bits) and the extra factor is taken back by
    the exponent, so (sum w*m*2^k) >> (shift + k) = (sum w*m) >> shift
    exactly (floor shift, as lava's right_shift)."""
    if not 2 <= bits <= MAX_WEIGHT_BITS:
        raise LavaMappingError(f"weights of {bits} bits: lava's Dense holds 2 to {MAX_WEIGHT_BITS}")
    k = MAX_WEIGHT_BITS + 1 - bits
    return np.asarray(w, np.int64) << k, -(int(shift) + k), bits


# Synapse roles with all-to-all weights (lava Dense); the others are one-to-one (Sparse).
DENSE_ROLES = ("affine", "mimo_b", "mimo_c", "mimo_d")


@dataclass
class SynapseSpec:
    """One lava Dense/Sparse (delay 0) or DelayDense/DelaySparse (delay > 0)."""

    name: str
    layer: str
    role: str                 # affine, expand, sum, d, add_a, add_b, relu
    src: str                  # group sending the messages
    dst: str                  # group receiving the accumulation
    w: np.ndarray             # our integer weights (out, in)
    bits: int                 # weight mantissa bits
    shift: int                # our floor shift
    num_message_bits: int
    delay: int = 0            # extra steps (DelayDense / DelaySparse)
    placement: list[dict] | None = None

    @property
    def sparse(self) -> bool:
        """One-to-one wiring (state expansion and sum, D path, adds, ReLU)
        goes to lava's Sparse: same bit-accurate arithmetic, no zero synapses."""
        return self.role not in DENSE_ROLES

    @property
    def lava(self) -> tuple[np.ndarray, int, int]:
        return lava_weights(self.w, self.bits, self.shift)

    def out_bound(self, in_bits: int) -> int:
        """Largest |output| lava's Dense can produce for inputs of `in_bits`
        bits (before the receiving unit saturates)."""
        acc = int(np.abs(self.w).sum(axis=1).max(initial=0)) * (1 << (in_bits - 1))
        return -(-acc >> self.shift) if self.shift >= 0 else acc << -self.shift


@dataclass
class GroupSpec:
    """A neuron group: source, unit, s4d or sink."""

    name: str
    layer: str
    kind: str
    size: int
    latency: int
    params: dict[str, Any] = field(default_factory=dict)
    placement: list[dict] | None = None


@dataclass
class LavaPlan:
    graph: Graph
    groups: dict[str, GroupSpec]
    synapses: list[SynapseSpec]
    tensor_group: dict[str, str]        # sequence tensor -> group that sends it
    host_tensors: list[str]             # sequence tensors the host reads (outputs, readouts)
    warnings: list[str]
    placement_source: str | None = None

    def latency(self, tensor: str) -> int:
        return self.groups[self.tensor_group[tensor]].latency

    @property
    def latency_steps(self) -> int:
        """Steps from an input token to the output that depends on it."""
        return max((self.latency(t) for t in self.host_tensors), default=0)

    @property
    def max_latency(self) -> int:
        return max(g.latency for g in self.groups.values())

    def steps(self, batch: int, time: int) -> int:
        """Lava steps for `batch` samples of `time` steps, run back to back
        (each group resets its state at its own sample boundary)."""
        return batch * time + self.max_latency

    def layer_latencies(self) -> dict[str, int]:
        return {l.name: self.latency(l.output) for l in self.graph.layers if l.output in self.tensor_group}

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for g in self.groups.values():
            kinds[g.kind] = kinds.get(g.kind, 0) + 1
        return {"latency_steps": self.latency_steps, "layer_latency": self.layer_latencies(),
                "processes": len(self.groups) + len(self.synapses), "groups": kinds,
                "synapses": {"dense": sum(s.delay == 0 for s in self.synapses),
                             "delay_dense": sum(s.delay > 0 for s in self.synapses)},
                "neurons": sum(g.params.get("modes", g.size) for g in self.groups.values()
                               if g.kind in ("unit", "s4d", "mimo")),
                "warnings": list(self.warnings), "placement": self.placement_source}


def _bits(l: Layer) -> dict:
    return l.attrs.get("bits", {})


def _msg_bits(l: Layer | None) -> int:
    return int(_bits(l).get("message", MESSAGE_BITS)) if l is not None else MESSAGE_BITS


def read_placement(path: str | Path | None, graph: Graph) -> tuple[dict[str, list[dict]], str | None]:
    """Placement per layer from a placement.json ({"partitions": [{"layer",
    "chip", "core", ...}, ...]}); every partition's keys are kept."""
    if path is None:
        return {}, None
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
        parts = doc["partitions"] if isinstance(doc, dict) else doc
        out: dict[str, list[dict]] = {}
        for part in parts:
            entry = {k: v for k, v in part.items() if k != "layer"}
            entry["chip"], entry["core"] = int(part["chip"]), int(part["core"])
            out.setdefault(str(part["layer"]), []).append(entry)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LavaMappingError(f"{p}: not a placement file with 'partitions' of layer/chip/core ({e})") from None
    # a MIMO layer's mode neurons are parts of their own, `LAYER/modes` (passes/partition.py)
    names = {l.name for l in graph.layers} | {f"{l.name}/modes" for l in graph.layers if l.op == "qmimo"}
    unknown = sorted(set(out) - names)
    if unknown:
        raise LavaMappingError(f"{p}: placement names layers the network does not have: {', '.join(unknown)}")
    return out, str(p)


class Mapper:
    """The plan under construction: what a per-op mapping (LAVA_OPS) adds
    groups and synapses through."""

    def __init__(self, graph: Graph, where_placed: dict[str, list[dict]]):
        self.graph = graph
        self.where_placed = where_placed
        self.groups: dict[str, GroupSpec] = {}
        self.syns: list[SynapseSpec] = []
        self.tgroup: dict[str, str] = {}  # tensor -> the group that sends it
        self.warnings: list[str] = []

    def add_group(self, g: GroupSpec) -> GroupSpec:
        g.placement = self.where_placed.get(g.layer)
        self.groups[g.name] = g
        return g

    def add_syn(self, s: SynapseSpec) -> None:
        if s.delay > MAX_SYNAPSE_DELAY:
            raise LavaMappingError(f"layer '{s.layer}': its inputs need {s.delay} steps of synaptic delay to "
                                   f"line up; Loihi 2 synapses delay at most {MAX_SYNAPSE_DELAY}")
        s.placement = self.where_placed.get(s.layer)
        bound = s.out_bound(s.num_message_bits)
        if bound > DENSE_OUT_LIMIT:
            self.warnings.append(f"layer '{s.layer}' ({s.role} synapse): accumulations up to {bound:.3g} overflow "
                                 "lava Dense's int32 output when inputs sit at their rails; exact as long as the "
                                 "unit before saturation stays within 2^31")
        self.syns.append(s)

    def src_of(self, tensor: str) -> tuple[str, int, int]:
        """(sending group, its latency, its message bits) of a tensor."""
        g = self.tgroup[tensor]
        return g, self.groups[g].latency, self.groups[g].params.get("message_bits", MESSAGE_BITS)

    def unit(self, l: Layer, latency: int, size: int, bias=None, bias_exp: int = 0,
             relu: bool = False) -> GroupSpec:
        return self.add_group(GroupSpec(l.name, l.name, "unit", size, latency, {
            "bias_mant": np.zeros(size, np.int64) if bias is None else np.asarray(bias, np.int64),
            "bias_exp": int(bias_exp), "relu": bool(relu), "message_bits": _msg_bits(l)}))


# Op -> how one on-chip layer of it becomes groups and synapses. A mapping
# registers the layer's output group in `m.tgroup` (unless it sends nothing
# of its own, as `output`).
LavaMapping = Callable[[Mapper, Layer], None]
LAVA_OPS: Registry[LavaMapping] = Registry("Lava mapping")


@LAVA_OPS.register("input")
def _map_input(m: Mapper, l: Layer) -> None:
    m.add_group(GroupSpec(l.name, l.name, "source", m.graph.tensors[l.output].features, 0,
                          {"message_bits": MESSAGE_BITS}))
    m.tgroup[l.output] = l.name


@LAVA_OPS.register("output")
def _map_output(m: Mapper, l: Layer) -> None:
    m.tgroup[l.output] = m.tgroup[l.inputs[0]]


@LAVA_OPS.register("qaffine")
def _map_qaffine(m: Mapper, l: Layer) -> None:
    src, lat, mb = m.src_of(l.inputs[0])
    m.add_syn(SynapseSpec(f"{l.name}.dense", l.name, "affine", src, l.name, l.params["weight"],
                          int(_bits(l).get("weight", MAX_WEIGHT_BITS)), int(l.attrs["shift"]), mb))
    m.unit(l, lat + 1, m.graph.tensors[l.output].features, l.params["bias_mant"], l.attrs["bias_exp"],
           l.attrs.get("relu", False))
    m.tgroup[l.output] = l.name


@LAVA_OPS.register("qssm")
def _map_qssm(m: Mapper, l: Layer) -> None:
    src, lat, mb = m.src_of(l.inputs[0])
    p, a = l.params, l.attrs
    H, N = p["a_re"].shape
    states = f"{l.name}.states"
    eye = np.eye(H, dtype=np.int64)
    m.add_syn(SynapseSpec(f"{l.name}.expand", l.name, "expand", src, states,
                          np.repeat(eye, N, axis=0), MAX_WEIGHT_BITS, 0, mb))
    flat = {k: np.asarray(p[k], np.int64).reshape(-1)
            for k in ("a_re", "a_im", "b_re", "b_im", "c_re", "c_im", "b_shift", "c_shift")}
    m.add_group(GroupSpec(states, l.name, "s4d", H * N, lat + 1, {
        **flat, "a_frac": int(a["a_frac"]), "state_bits": int(_bits(l).get("state", STATE_BITS)),
        "message_bits": _msg_bits(l), "channels": H, "states_per_channel": N}))
    m.add_syn(SynapseSpec(f"{l.name}.sum", l.name, "sum", states, l.name,
                          np.repeat(eye, N, axis=1), MAX_WEIGHT_BITS, 0, _msg_bits(l)))
    m.add_syn(SynapseSpec(f"{l.name}.d", l.name, "d", src, l.name, np.diag(np.asarray(p["d"], np.int64)),
                          int(_bits(l).get("weight", MAX_WEIGHT_BITS)), int(a["d_shift"]), mb, delay=1))
    m.unit(l, lat + 2, H, p["bias_mant"], a["bias_exp"], a.get("relu", False))
    m.tgroup[l.output] = l.name


@LAVA_OPS.register("qmimo")
def _map_qmimo(m: Mapper, l: Layer) -> None:
    src, lat, mb = m.src_of(l.inputs[0])
    p, a = l.params, l.attrs
    wbits = int(_bits(l).get("weight", MAX_WEIGHT_BITS))
    P = int(p["a_re"].shape[0])
    modes = f"{l.name}.modes"
    m.add_syn(SynapseSpec(f"{l.name}.b", l.name, "mimo_b", src, modes,
                          np.concatenate([p["b_re"], p["b_im"]]).astype(np.int64), wbits, 0, mb))
    m.syns[-1].placement = m.where_placed.get(f"{l.name}/modes")  # synapses live at the receiving cores
    g = m.add_group(GroupSpec(modes, l.name, "mimo", 2 * P, lat + 1, {
        "modes": P, "a_re": np.asarray(p["a_re"], np.int64), "a_im": np.asarray(p["a_im"], np.int64),
        "b_shift": np.asarray(p["b_shift"], np.int64), "a_frac": int(a["a_frac"]), "x_shift": int(a["x_shift"]),
        "state_bits": int(_bits(l).get("state", STATE_BITS)), "message_bits": _msg_bits(l)}))
    g.placement = m.where_placed.get(f"{l.name}/modes")
    m.add_syn(SynapseSpec(f"{l.name}.c", l.name, "mimo_c", modes, l.name,
                          np.concatenate([p["c_re"], -np.asarray(p["c_im"])], axis=1).astype(np.int64), wbits,
                          int(a["c_shift"]), _msg_bits(l)))
    m.add_syn(SynapseSpec(f"{l.name}.d", l.name, "mimo_d", src, l.name, np.asarray(p["d"], np.int64), wbits,
                          int(a["d_shift"]), mb, delay=1))
    m.unit(l, lat + 2, m.graph.tensors[l.output].features, p["bias_mant"], a["bias_exp"], a.get("relu", False))
    m.tgroup[l.output] = l.name


@LAVA_OPS.register("qadd")
def _map_qadd(m: Mapper, l: Layer) -> None:
    (sa, la, ma), (sb, lb, mb) = m.src_of(l.inputs[0]), m.src_of(l.inputs[1])
    lat = max(la, lb) + 1
    f = m.graph.tensors[l.output].features
    eye = np.eye(f, dtype=np.int64)
    m.add_syn(SynapseSpec(f"{l.name}.a", l.name, "add_a", sa, l.name, eye, MAX_WEIGHT_BITS,
                          int(l.attrs["shift_a"]), ma, delay=lat - 1 - la))
    m.add_syn(SynapseSpec(f"{l.name}.b", l.name, "add_b", sb, l.name, eye, MAX_WEIGHT_BITS,
                          int(l.attrs["shift_b"]), mb, delay=lat - 1 - lb))
    m.unit(l, lat, f)
    m.tgroup[l.output] = l.name


@LAVA_OPS.register("relu")
def _map_relu(m: Mapper, l: Layer) -> None:
    src, lat, mb = m.src_of(l.inputs[0])
    f = m.graph.tensors[l.output].features
    m.add_syn(SynapseSpec(f"{l.name}.dense", l.name, "relu", src, l.name, np.eye(f, dtype=np.int64),
                          MAX_WEIGHT_BITS, 0, mb))
    m.unit(l, lat + 1, f, relu=True).params["message_bits"] = mb
    m.tgroup[l.output] = l.name


def plan(graph: Graph, placement: str | Path | None = None) -> LavaPlan:
    """Map a quantized graph to Lava groups and synapses (see module doc)."""
    where_placed, placement_source = read_placement(placement, graph)
    if not any(l.opdef.quantized for l in graph.layers):
        raise LavaMappingError(f"network '{graph.name}' is not quantized (compiled with --float?); the Lava "
                               "backend runs Loihi 2 integer networks: compile without --float")
    m = Mapper(graph, where_placed)
    for l in graph.layers:
        if not graph.tensors[l.output].sequence:
            continue  # host layer (after a time readout)
        mapping = LAVA_OPS.get(l.op)
        if mapping is None:
            raise LavaMappingError(f"{l.where()}: op '{l.op}' has no Lava mapping (on-chip ops: "
                                   f"{', '.join(LAVA_OPS.names())})")
        mapping(m, l)
    host = [l for l in graph.layers if not graph.tensors[l.output].sequence]
    needed = {i for l in host for i in l.inputs} | {l.output for l in graph.output_layers}
    host_tensors = [t for t in m.tgroup if t in needed and graph.tensors[t].sequence]
    return LavaPlan(graph, m.groups, m.syns, m.tgroup, host_tensors, m.warnings, placement_source)
