"""The Loihi 2 mapping steps of the flow: partition the quantized network
over neurocores for the objective, then place the parts on the chips' meshes.

They leave the graph as it is and put what they decide in the pass
context's `results` (the compile writes it as placement.json):
`partitioning` and `partition_search` from "partition", `placement` from
"place". The hardware model comes from the options (`hardware`, `chips`).
"""
from __future__ import annotations

from typing import Any

from s4dc.ir.graph import Graph
from s4dc.passes.base import PassContext, PassPreconditionError, register


def _spec(ctx: PassContext) -> Any:
    from s4dc.targets.loihi2.hardware import load_spec

    if "spec" not in ctx.results:
        ctx.results["spec"] = load_spec(ctx.options.hardware, chips=ctx.options.chips)
    return ctx.results["spec"]


@register("partition", requires=("quantized",))
def partition(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    """How many cores each layer gets: the split among those considered that
    is best for `options.objective` within `max_latency_us` / `max_cores`,
    with messages counted from the activity measured on the calibration set."""
    from s4dc.passes.partition import measure, partition_for

    opts, spec = ctx.options, _spec(ctx)
    m = measure(graph, ctx.calibration_x) if ctx.calibration_x is not None else None
    parts, search = partition_for(graph, spec, objective=opts.objective, max_latency_us=opts.max_latency_us,
                                  max_cores=opts.max_cores, activity=m.activity if m else None,
                                  sparsity=m.sparsity if m else None)
    c = search["candidates"][search["chosen"]]
    ctx.progress(f"partition for {opts.objective}: {parts.n_parts} cores (of {len(search['candidates'])} splits), "
                 f"modelled {c['latency_per_token_s'] * 1e6:.3g} us and {c['energy_per_token_j'] * 1e6:.3g} uJ "
                 "per token")
    ctx.results.update(partitioning=parts, partition_search=search, activity=m)
    return graph, {"parts": len(parts.parts), "objective": opts.objective}


@register("place", requires=("quantized",))
def place(graph: Graph, ctx: PassContext) -> tuple[Graph, dict[str, Any]]:
    """The parts on the mesh, minimizing hop-weighted traffic (naive, greedy
    and optimized placements with the lower bound: placement.json)."""
    from s4dc.passes.partition import sparsity_sweep, spread_of
    from s4dc.passes.place import place as place_parts

    parts = ctx.results.get("partitioning")
    if parts is None:
        raise PassPreconditionError("pass 'place' needs the partition step before it in the flow")
    opts, spec, m = ctx.options, _spec(ctx), ctx.results.get("activity")
    ctx.progress(f"placing {len(parts.parts)} parts on {spec.chips} chip(s) of {spec.cores_per_chip} cores")
    doc = place_parts(parts, spec, seed=opts.place_seed, budget=opts.place_budget, progress=ctx.progress)
    doc["partition_search"] = ctx.results["partition_search"]
    if m is not None:
        doc["activity_measured"] = {"samples": m.samples, "steps": m.steps,
                                    "sweep": sparsity_sweep(graph, spec, spread_of(parts), m)}
    ctx.results["placement"] = doc
    return graph, {"chips": spec.chips, "traffic": doc["placements"]["optimized"].get("objective")}
