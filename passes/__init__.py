"""Graph passes. Importing this package registers every pass in PASSES."""
from s4dc.passes import (canonicalize, diagonalize, discretize, fold_conjugates, quantize,  # noqa: F401
                         realize, sink_readout)
from s4dc.passes.base import PASSES, PassLog, run_flow

# Named flows, as hls4ml's: what `s4dc.compile` runs, in order.
_FLOAT = ["canonicalize", "realize", "diagonalize", "discretize", "fold_conjugates", "canonicalize"]
FLOWS: dict[str, list[str]] = {
    "float": _FLOAT,
    "loihi2": _FLOAT + ["sink_readout", "quantize"],
}

__all__ = ["FLOWS", "PASSES", "PassLog", "run_flow"]
