"""Exact adapters: one small module per library, keyed by the layer's class path.

An adapter turns one library layer into a replacement module that computes
the same outputs from s4dc's canonical nodes (`s4dc.torch.emit`), reading
the layer's own parameters with the library's own discretization. The
registry matches layers by the string `module.QualName` of their class, so
no library is imported here, installed or not; an adapter module only reads
attributes of the layer it is given.

    @register("lrnnx.models.lti.s4d.S4D", library="lrnnx", layer="S4D")
    def adapt(name: str, layer: nn.Module, args: tuple) -> nn.Module: ...

`adapt` gets the layer's qualified name (for messages), the layer and the
positional arguments it was called with on the example input, and returns
the replacement (or raises ExportError naming the module). The export
driver checks the replacement against the layer on those arguments.

Today every adapter emits the canonical SISO form (one diagonal state space
per channel: `s4dc.S4D`, `S4DBilinear`, `S4DDiscrete`). A MIMO adapter
(S5, LRU; issue 13) is registered the same way and returns a module that
emits the MIMO node (`s4dc.MIMO*`) through `s4dc.torch.emit.emit` once
that op is listed there; the driver, the refusals and the checks do not
change. Layers with no fixed class (the state-spaces S4D, which users copy
into their own code) are found by a structural matcher (`register_finder`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

AdaptFn = Callable[[str, nn.Module, tuple], nn.Module]
# (model) -> [(qualified name, layer, adapt)] for layers a finder recognizes by their structure
FinderFn = Callable[[nn.Module], "list[tuple[str, nn.Module, AdaptFn]]"]


@dataclass(frozen=True)
class Adapter:
    class_path: str   # type(layer).__module__ + "." + type(layer).__qualname__
    library: str      # PyPI name (or "s4dc", "state-spaces")
    layer: str        # the layer's name in the library's docs
    adapt: AdaptFn


ADAPTERS: dict[str, Adapter] = {}
FINDERS: list[FinderFn] = []


def class_path(m: nn.Module) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}"


def register(path: str, *, library: str, layer: str) -> Callable[[AdaptFn], AdaptFn]:
    def deco(fn: AdaptFn) -> AdaptFn:
        if path in ADAPTERS:
            raise ValueError(f"an adapter for {path} is already registered")
        ADAPTERS[path] = Adapter(path, library, layer, fn)
        return fn
    return deco


def register_finder(fn: FinderFn) -> FinderFn:
    FINDERS.append(fn)
    return fn


def find_layers(model: nn.Module) -> list[tuple[str, nn.Module, AdaptFn]]:
    """Every layer an adapter knows, outermost first; nothing inside a found
    layer is looked at again."""
    found: list[tuple[str, nn.Module, AdaptFn]] = []
    taken: list[str] = []
    inside = lambda n: any(n == t or n.startswith(t + ".") or t == "" for t in taken)  # noqa: E731
    for name, m in model.named_modules():
        a = ADAPTERS.get(class_path(m))
        if a is not None and not inside(name):
            found.append((name, m, a.adapt))
            taken.append(name)
    for finder in FINDERS:
        for name, m, fn in finder(model):
            if not inside(name):
                found.append((name, m, fn))
                taken.append(name)
    return found


from s4dc.torch.adapters import lrnnx, lru_pytorch, s4dc_ns4d, s5_pytorch, state_spaces  # noqa: E402,F401,E501
