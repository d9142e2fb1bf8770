"""Graph passes. Importing this package registers every pass in PASSES."""
from s4dc.passes import (canonicalize, diagonalize, discretize, fold_conjugates, mapping,  # noqa: F401
                         quantize, realize, sink_readout)
from s4dc.passes.base import PASSES, PassLog, run_flow

# Named flows, as hls4ml's: what `s4dc.compile` runs, in order.
_FLOAT = ["canonicalize", "realize", "diagonalize", "discretize", "fold_conjugates", "canonicalize"]
FLOWS: dict[str, list[str]] = {
    "float": _FLOAT,
    "loihi2": _FLOAT + ["sink_readout", "quantize", "partition", "place"],
}
# The Loihi 2 flow without partition and place (`place=False`, --no-place).
FLOWS["loihi2_unplaced"] = FLOWS["loihi2"][:-2]

__all__ = ["FLOWS", "PASSES", "PassLog", "run_flow"]
