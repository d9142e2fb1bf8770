"""A toy op added from outside s4dc, as docs/architecture.md's recipe says:
`toy.Scale(x, s)`, y = s * x per feature (s a constant vector).

One registration per table, nothing else edited: the IR ops `scale` (float)
and `qscale` (integers: an 8-bit diagonal synapse and a shift into a unit),
the frontend handler, the quantization rule, the float executor, the
bit-exact simulator, the Lava mapping and the partitioner's view.
tests/test_toy_op.py loads it through $S4DC_PLUGINS, so the Lava
environment's process registers it too. Python 3.10 (the Lava venv) and up.
"""
from __future__ import annotations

import math

import numpy as np

from s4dc.frontend.handlers import HANDLERS, _const, _feature_vector, _no_pad, handles
from s4dc.frontend.values import Act
from s4dc.ir.ops import OPS, OpDef, arity, fail, param, register_op
from s4dc.ir.ops_quant import bits_attr, int_param, shift_attr
from s4dc.passes.partition import PARTITION_OPS, _elementwise_view
from s4dc.passes.quantize import RULES
from s4dc.targets.fixed_sim import SIM_OPS, SimOp, register_sim_op
from s4dc.targets.float_exec import FLOAT_OPS, FloatImpl
from s4dc.targets.lava.plan import LAVA_OPS, SynapseSpec
from s4dc.targets.loihi2.numerics import MESSAGE_BITS, floor_shift, qmax, round_to_grid

DOMAIN = "toy"


# --- IR ---------------------------------------------------------------------------
@register_op
class Scale(OpDef):
    name = "scale"
    params = ("s",)
    on_chip = True
    quantizable = True
    fuses_relu = True
    synapse_stages = 1

    def infer(self, layer, ins):
        arity(layer, ins, 1)
        param(layer, "s", (ins[0].features,))
        return ins[0].features, ins[0].sequence


@register_op
class QScale(OpDef):
    name = "qscale"
    params = ("weight",)
    on_chip = True
    quantized = True
    synapse_stages = 1

    def infer(self, layer, ins):
        arity(layer, ins, 1)
        int_param(layer, "weight", (ins[0].features,), bits_attr(layer)["weight"])
        shift_attr(layer, "shift")
        if not isinstance(layer.attrs.get("relu"), bool):
            fail(layer, "attribute 'relu' must be a bool")
        return ins[0].features, ins[0].sequence


# --- frontend -------------------------------------------------------------------------
@handles("Scale", domain=DOMAIN)
def _lower_scale(fe, node, ins):
    act = ins[0]
    _no_pad(node, act)
    s = _feature_vector(node, act, _const(fe, node, ins[1], "scale"), "scale")
    t = fe.emit(node, "scale", [act.tensor], act.features, act.sequence, params={"s": s.astype(np.float64)})
    return [Act(t, act.with_f(), act.features, act.time)]


# --- float semantics ------------------------------------------------------------------
def _scale(ex, l, ins, *rest):
    return ins[0] * l.params["s"]


FLOAT_OPS.add("scale", FloatImpl(seq=_scale, step=_scale))


# --- quantization: s on an 8-bit (configurable) weight grid ---------------------------
def _quantize(l, site):
    s, bits = l.params["s"], site.bw.weight
    peak = float(np.abs(s).max(initial=0.0))
    e_w = int(math.ceil(math.log2(peak / qmax(bits)))) if peak > 0 else 0
    l.op = "qscale"
    l.params = {"weight": round_to_grid(s, e_w, bits)}
    l.attrs = {"shift": site.e_out - e_w - site.e_ins[0], "relu": site.relu, "bits": site.bw.to_json()}
    return site.e_out


RULES.add("scale", _quantize)


# --- bit-exact simulator ---------------------------------------------------------------
@register_sim_op("qscale")
class _SimQScale(SimOp):
    def __init__(self, layer):
        super().__init__(layer)
        self.w = layer.params["weight"].astype(np.float64)

    def step(self, sim, ins, m_t, state):
        v = floor_shift(ins[0] * self.w, self.layer.attrs["shift"])
        return sim.finish(self.layer, v, self.layer.attrs["bits"].get("message", MESSAGE_BITS))


# --- Lava: a diagonal Dense synapse into a unit -----------------------------------------
def _map_qscale(m, l):
    src, lat, mb = m.src_of(l.inputs[0])
    bits = l.attrs["bits"]
    m.add_syn(SynapseSpec(f"{l.name}.dense", l.name, "scale", src, l.name, np.diag(l.params["weight"]),
                          int(bits["weight"]), int(l.attrs["shift"]), mb))
    m.unit(l, lat + 1, m.graph.tensors[l.output].features, relu=l.attrs["relu"])
    m.tgroup[l.output] = l.name


LAVA_OPS.add("qscale", _map_qscale)

# --- partitioning: one unit per feature, like any elementwise layer ---------------------------
PARTITION_OPS.add("scale", _elementwise_view)
PARTITION_OPS.add("qscale", _elementwise_view)


def unregister() -> None:
    """Take every entry out again (the test suite shares its processes)."""
    for reg, names in ((OPS, ("scale", "qscale")), (FLOAT_OPS, ("scale",)), (RULES, ("scale",)),
                       (SIM_OPS, ("qscale",)), (LAVA_OPS, ("qscale",)), (PARTITION_OPS, ("scale", "qscale"))):
        for n in names:
            reg.remove(n)
    del HANDLERS[(DOMAIN, "Scale")]
