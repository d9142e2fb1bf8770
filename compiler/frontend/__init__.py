"""The frontend: ONNX as exporters write it -> the IR.

    onnx_prep      read, check, inline, fix the time length, fold constants
    lower          walk the graph node by node (`Frontend`)
    handlers       one handler per ONNX op type (a registry)
    canonical      s4dc's own ONNX functions (S4D, S4DDiscrete, Quant): writer and handlers
    scan_lowering  a linear Scan body, measured into a state space
    values         what flows during lowering (constants, symbols, activations)

It knows nothing of Loihi 2: its output is a float IR graph.
"""
from s4dc.frontend.lower import Frontend, where

__all__ = ["Frontend", "where"]
