"""Structural verifier: every pass's result goes through `verify`."""
from __future__ import annotations

from s4dc.errors import IRVerificationError
from s4dc.ir.graph import Graph
from s4dc.ir.ops import INPUT, OPS


def verify(graph: Graph) -> Graph:
    """Check names, execution order, and every layer's typing rule.
    Returns the graph so calls can be chained."""
    names: set[str] = set()
    written: set[str] = set()
    inputs = [l for l in graph.layers if l.is_(INPUT)]
    if len(inputs) != 1:
        raise IRVerificationError(f"graph '{graph.name}': needs exactly one input layer, has {len(inputs)}")
    if not graph.output_layers:
        raise IRVerificationError(f"graph '{graph.name}': has no output layer")
    for layer in graph.layers:
        if layer.name in names:
            raise IRVerificationError(f"graph '{graph.name}': duplicate layer name '{layer.name}'")
        names.add(layer.name)
        if layer.op not in OPS:
            raise IRVerificationError(f"{layer.where()}: unknown op '{layer.op}'")
        for t in layer.inputs:
            if t not in written:
                raise IRVerificationError(f"{layer.where()}: reads tensor '{t}' before any layer writes it")
        if layer.output in written:
            raise IRVerificationError(f"{layer.where()}: tensor '{layer.output}' is written twice")
        out = graph.tensors.get(layer.output)
        if out is None:
            raise IRVerificationError(f"{layer.where()}: output tensor '{layer.output}' is not declared")
        features, sequence = OPS[layer.op].infer(layer, [graph.tensors[t] for t in layer.inputs])
        if (out.features, out.sequence) != (features, sequence):
            raise IRVerificationError(
                f"{layer.where()}: output '{out.name}' declared ({out.features}, seq={out.sequence}), "
                f"rule gives ({features}, seq={sequence})")
        written.add(layer.output)
    import networkx as nx  # loaded on use: `import s4dc.ir` stays light

    if not nx.is_directed_acyclic_graph(graph.to_networkx()):
        raise IRVerificationError(f"graph '{graph.name}': has a cycle")
    return graph
