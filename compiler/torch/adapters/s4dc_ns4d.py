"""s4dc's own `s4dc.torch.NS4D`: its forward is ours, ReLU(causal_conv(u, K) + D u)."""
from __future__ import annotations

import torch.nn as nn

from s4dc.torch.adapters import register
from s4dc.torch.emit import SSMCore


@register("s4dc.torch.layers.NS4D", library="s4dc", layer="NS4D")
def adapt(name: str, layer: nn.Module, args: tuple) -> nn.Module:
    from s4dc.torch.layers import s4d_params

    core = SSMCore(s4d_params(layer), "BHL" if layer.transposed else "BLH")
    return nn.Sequential(core, nn.ReLU()) if layer.activation else core
