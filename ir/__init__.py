"""s4dc's intermediate representation: a small typed graph of layers."""
from s4dc.ir.graph import Graph
from s4dc.ir.layer import Layer
from s4dc.ir.serialize import load_graph, save_graph
from s4dc.ir.tensor import FixedPoint, Tensor
from s4dc.ir.verify import verify

__all__ = ["FixedPoint", "Graph", "Layer", "Tensor", "load_graph", "save_graph", "verify"]
