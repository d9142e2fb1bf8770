"""s4dc: compile diagonal state space models (S4D) from ONNX to Loihi 2.

    import s4dc
    net = s4dc.compile("model.onnx")          # -> s4dc.Network
    y = net.run(x)                             # x: (batch, time, features)
    net.save("net/"); net = s4dc.load("net/")
"""
__version__ = "0.1.0"

from s4dc.errors import S4dcError  # noqa: E402
from s4dc.network import Network, load  # noqa: E402
from s4dc.api import compile  # noqa: E402,A004
from s4dc.options import CompileOptions  # noqa: E402

__all__ = ["CompileOptions", "Network", "S4dcError", "__version__", "compile", "load"]
