"""A compiled network: the IR plus what it was compiled from, and how to run,
save and load it. `OUT/` layout and format: docs/net_format.md."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from s4dc.atomic import umask_mode
from s4dc.errors import InputDataError, NetworkFormatError
from s4dc.ir.graph import Graph
from s4dc.ir.serialize import dump_json, load_graph, save_graph
from s4dc.ir.verify import verify
from s4dc.targets.fixed_sim import QUANTIZED_OPS, FixedSimulator
from s4dc.targets.float_exec import FloatExecutor

NET_FORMAT = "s4dc-net"
NET_FORMAT_VERSION = 1


class Network:
    """Run with `run(x)` (x: (batch, time, features)) or token by token with
    `step(x_t)`; `trace(x)` gives every layer's output."""

    def __init__(self, graph: Graph, manifest: dict[str, Any], timings: dict[str, float] | None = None,
                 placement: dict[str, Any] | None = None):
        self.graph = graph
        self.manifest = manifest
        self.timings = timings or {}
        self.placement = placement  # the placement.json document, when placed
        # In memory only (not saved): the float graph quantization started
        # from, after a compile; QAT starts its weights there.
        self.float_graph: Graph | None = None
        quantized = any(l.op in QUANTIZED_OPS for l in graph.layers)
        self._exec = FixedSimulator(graph) if quantized else FloatExecutor(graph)

    @property
    def quantized(self) -> bool:
        return isinstance(self._exec, FixedSimulator)

    @property
    def saturations(self) -> dict[str, int]:
        """Values that hit a register's rails, per layer, over all runs so far."""
        return dict(getattr(self._exec, "saturations", {}))

    # -- running --------------------------------------------------------
    def _input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise InputDataError(f"input must be float32, got dtype {x.dtype}")
        if self.graph.meta.get("input_rank") == 2 and x.ndim == 2:
            x = x[..., None]
        return x

    def run(self, x: np.ndarray, workers: int = 1) -> np.ndarray | list[np.ndarray]:
        """Outputs shaped exactly as the ONNX model's. `workers` > 1 runs a
        quantized network's batch on that many processes."""
        if self.quantized:
            return self._exec.run(self._input(x), workers=workers)
        return self._exec.run(self._input(x))

    def trace(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self._exec.trace(self._input(x))

    def step(self, x_t: np.ndarray) -> np.ndarray | list[np.ndarray]:
        return self._exec.step(x_t)

    def reset(self) -> None:
        self._exec.reset()

    # -- disk -----------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write OUT/ atomically: into a temporary sibling, then renamed, so a
        failure never leaves a half-written OUT/."""
        out = Path(folder)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            save_graph(self.graph, tmp)
            (tmp / "manifest.json").write_text(dump_json(self.manifest))
            (tmp / "timings.json").write_text(dump_json(self.timings))
            if self.placement is not None:
                from s4dc.passes.place import placement_json
                (tmp / "placement.json").write_text(placement_json(self.placement))
            from s4dc.report import write_html
            write_html(tmp)  # OUT/report.html: placement, numerics and cost in a browser
            os.chmod(tmp, umask_mode(0o777))  # mkdtemp makes 0700; OUT/ is an ordinary folder
            old = None
            if out.exists():
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                out.rename(old)
            tmp.rename(out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def load(folder: str | os.PathLike) -> Network:
    """Load a network written by `Network.save` (or `s4dc MODEL -o OUT`)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise NetworkFormatError(f"{folder}: not an s4dc network (manifest.json: {e})") from None
    if manifest.get("format") != NET_FORMAT or manifest.get("format_version") != NET_FORMAT_VERSION:
        raise NetworkFormatError(f"{folder}/manifest.json: format {manifest.get('format')!r} version "
                                 f"{manifest.get('format_version')!r}; this s4dc reads {NET_FORMAT} "
                                 f"version {NET_FORMAT_VERSION}")
    graph = verify(load_graph(folder))
    try:
        timings = json.loads((folder / "timings.json").read_text())
    except (OSError, ValueError):
        timings = {}
    placement = None
    if "placement" in manifest.get("files", {}):
        try:
            placement = json.loads((folder / manifest["files"]["placement"]).read_text())
        except (OSError, ValueError) as e:
            raise NetworkFormatError(f"{folder}: placement.json unreadable ({e})") from None
    return Network(graph, manifest, timings, placement)
