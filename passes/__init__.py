"""Graph passes. Importing this package registers every pass in PASSES."""
from s4dc.passes import canonicalize, diagonalize, discretize, fold_conjugates, realize  # noqa: F401
from s4dc.passes.base import PASSES, PassLog, run_flow

# Named flows, as hls4ml's: what `s4dc.compile` runs, in order.
FLOWS: dict[str, list[str]] = {
    "float": ["canonicalize", "realize", "diagonalize", "discretize", "fold_conjugates", "canonicalize"],
}

__all__ = ["FLOWS", "PASSES", "PassLog", "run_flow"]
