"""A compiled network: the IR plus what it was compiled from, and how to run,
save and load it. `OUT/` layout and format: docs/net_format.md."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from s4dc.atomic import umask_mode
from s4dc.errors import (InputDataError, KernelLengthError, KernelLengthWarning, NetworkFormatError, OutputError,
                         QuantizationAccuracyError, QuantizationAccuracyWarning, S4dcError, SaturationError,
                         SaturationWarning, first_line)
from s4dc.ir.graph import Graph
from s4dc.ir.serialize import dump_json, load_graph, save_graph
from s4dc.ir.verify import verify
from s4dc import plugins
from s4dc.targets.fixed_sim import FixedSimulator, is_quantized
from s4dc.targets.float_exec import FloatExecutor

NET_FORMAT = "s4dc-net"
NET_FORMAT_VERSION = 1
# What Network.save writes: only these may be replaced or removed in OUT/.
OUT_FILES = ("manifest.json", "graph.json", "params.npz", "timings.json", "placement.json", "report.html")
# A run in which more than this fraction of a layer's values saturate warns
# (an error with strict): beyond it the outputs are mostly clipping.
SATURATION_WARN_FRACTION = 0.01


def check_time_length(kernel_lengths: dict[str, int], time_steps: int, strict: bool, what: str) -> str | None:
    """Say (a KernelLengthWarning, or KernelLengthError when strict) that
    `time_steps` exceeds convolution kernels: beyond its length the realized
    state space runs on, while the ONNX model truncates its kernel.
    Returns the message, or None when every kernel is long enough."""
    over = {k: v for k, v in sorted((kernel_lengths or {}).items()) if time_steps > v}
    if not over:
        return None
    names = ", ".join(f"'{k}' ({v} taps)" for k, v in over.items())
    msg = (f"{what}: time length {time_steps} exceeds the convolution kernel of layer(s) {names}; beyond "
           f"{min(over.values())} steps the compiled network follows the realized state space, not the ONNX model's "
           "truncated kernel, so outputs differ from onnxruntime's")
    return _warn_or_raise(msg, strict, KernelLengthError, KernelLengthWarning)


def _warn_or_raise(msg: str, strict: bool, error: type[S4dcError], warning: type[UserWarning]) -> str:
    """A compile-time warning: raised as `error` when strict. Returns the message."""
    if strict:
        raise error(msg + " (strict)")
    warnings.warn(msg, warning, stacklevel=4)
    return msg


# Quantized output error (relative RMS against float, on the calibration
# inputs) beyond which the compile warns, or refuses with strict. The shipped
# models sit at 0.002-3%; far past it a layer's widths are too small for its
# weights, or weights cancel (a D undoing its modes at tap 0: an output that
# reads the old state of a fast mode).
ACCURACY_WARN = 0.10


def check_accuracy(quantize_report: dict[str, Any], strict: bool, what: str) -> str | None:
    """Say (a QuantizationAccuracyWarning, or QuantizationAccuracyError when
    strict) that the quantize pass's output error exceeds ACCURACY_WARN.
    Returns the message, or None."""
    err = quantize_report.get("output_rel_rms_error")
    if err is None or err <= ACCURACY_WARN:
        return None
    layers = quantize_report.get("layers", {})
    worst = max(((v["rel_rms_error"], k) for k, v in layers.items() if "rel_rms_error" in v), default=None)
    at = f" (worst layer '{worst[1]}': {worst[0]:.1%})" if worst else ""
    msg = (f"{what}: the quantized output is {err:.1%} RMS from float on the calibration inputs{at}, over "
           f"{ACCURACY_WARN:.0%}; widen that layer's widths (--config), or look for weights that cancel "
           "(a zero-delay D undoing its modes: an output that reads the old state of a fast mode)")
    return _warn_or_raise(msg, strict, QuantizationAccuracyError, QuantizationAccuracyWarning)


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
        plugins.load()  # out-of-tree ops (S4DC_PLUGINS) before the targets look them up
        quantized = is_quantized(graph)
        self._exec: FixedSimulator | FloatExecutor = FixedSimulator(graph) if quantized else FloatExecutor(graph)
        # Warnings of the last run (time length beyond a kernel, saturation),
        # also issued through the `warnings` module; `strict` makes them errors.
        self.warnings: list[str] = []
        opts = manifest.get("options")
        opts = opts if isinstance(opts, dict) else {}
        self.strict = bool(opts.get("strict", False))

    @property
    def kernel_lengths(self) -> dict[str, int]:
        """Taps of each convolution-form layer's kernel (layer name -> length)."""
        return dict(self.manifest.get("kernel_lengths") or self.graph.meta.get("kernel_lengths") or {})

    @property
    def quantized(self) -> bool:
        return isinstance(self._exec, FixedSimulator)

    @property
    def saturations(self) -> dict[str, int]:
        """Values that hit a register's rails, per layer, over all runs so far."""
        return dict(getattr(self._exec, "saturations", {}))

    # -- running --------------------------------------------------------
    def check_input(self, x: np.ndarray) -> np.ndarray:
        """x checked: float, (batch, time, features) with the network's
        feature count, not empty, finite."""
        x = np.asarray(x)
        if x.dtype == object or not np.issubdtype(x.dtype, np.floating):
            raise InputDataError(f"input must be float32, got dtype {x.dtype}")
        if self.graph.meta.get("input_rank") == 2 and x.ndim == 2:
            x = x[..., None]
        features = self.graph.input_layer.attrs["features"]
        if x.ndim != 3 or x.shape[2] != features:
            raise InputDataError(f"input has shape {x.shape}; the network takes (batch, time, {features})")
        if x.size == 0:
            raise InputDataError(f"input has shape {x.shape}: no batch or no time steps")
        bad = ~np.isfinite(x)
        if bad.any():
            raise InputDataError(f"input holds {int(bad.sum())} NaN or Inf value(s), the first at index "
                                 f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
        return x

    def run(self, x: np.ndarray, workers: int = 1, strict: bool | None = None) -> np.ndarray | list[np.ndarray]:
        """Outputs shaped exactly as the ONNX model's. `workers` > 1 runs a
        quantized network's batch on that many processes. A time length beyond
        a convolution kernel, or saturation beyond SATURATION_WARN_FRACTION of
        a layer's values, is a warning (in `self.warnings` too), an error when
        `strict` (default: the compile's strict option)."""
        strict = self.strict if strict is None else strict
        x = self.check_input(x)
        self.warnings = []
        msg = check_time_length(self.kernel_lengths, x.shape[1], strict, "run")
        if msg:
            self.warnings.append(msg)
        before = self.saturations
        ex = self._exec
        y = ex.run(x, workers=workers) if isinstance(ex, FixedSimulator) else ex.run(x)
        msg = self._saturation_issue(before, x.shape[0], x.shape[1])
        if msg:
            if strict:
                raise SaturationError(msg + " (strict)")
            warnings.warn(msg, SaturationWarning, stacklevel=2)
            self.warnings.append(msg)
        return y

    def _saturation_issue(self, before: dict[str, int], batch: int, time: int) -> str | None:
        """The layers whose saturated values in this run exceed the threshold."""
        over = []
        for name, count in sorted(self.saturations.items()):
            new = count - before.get(name, 0)
            t = self.graph.tensors.get(name)
            values = batch * (time if t is None or t.sequence else 1) * (t.features if t is not None else 1)
            if new > SATURATION_WARN_FRACTION * values:
                over.append(f"'{name}' {new / values:.1%}")
        if not over:
            return None
        return (f"run: saturation in {len(over)} layer(s) beyond {SATURATION_WARN_FRACTION:.0%} of their values "
                f"({', '.join(over)}); the integers hit their registers' rails, outputs may be far off "
                "(recalibrate, or widen the bits)")

    def trace(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self._exec.trace(self.check_input(x))

    def step(self, x_t: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """One token: x_t (batch, features), checked as `run` checks x."""
        x_t = np.asarray(x_t)
        tok = x_t[:, None] if x_t.ndim == 1 and self.graph.meta.get("input_rank") == 2 else x_t
        if tok.ndim != 2:
            raise InputDataError(f"token has shape {x_t.shape}; step takes (batch, features)")
        self.check_input(tok[:, None, :])
        return self._exec.step(x_t)

    def reset(self) -> None:
        self._exec.reset()

    # -- disk -----------------------------------------------------------
    def save(self, folder: str | os.PathLike, force: bool = False) -> Path:
        """Write OUT/ atomically: into a temporary sibling, then renamed, so a
        failure never leaves a half-written OUT/. An existing OUT/ must be an
        s4dc output folder (or `force`); only s4dc's own files in it are
        replaced, anything else in it is kept."""
        out = Path(folder)
        mode = check_output(out, force)
        # The temporary folder lies where its files are renamed to (same file
        # system): beside OUT/, or inside it when merging into an existing one.
        where = out if mode == "merge" else out.absolute().parent
        try:
            where.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.absolute().name or 'out'}.", dir=where))
        except OSError as e:
            raise OutputError(f"{out}: cannot write there ({e.strerror or e})") from None
        try:
            self._write(tmp)
            os.chmod(tmp, umask_mode(0o777))  # mkdtemp makes 0700; OUT/ is an ordinary folder
            if mode == "merge":
                _merge(tmp, out)
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                old = None
                if out.exists() or out.is_symlink():  # "replace": ours alone, or a file with force
                    old = out.absolute().with_name(f".{out.absolute().name}.old-{os.getpid()}")
                    out.rename(old)
                tmp.rename(out)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() \
                        else old.unlink()
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(f"{out}: cannot write the network ({e.strerror or e})") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    def _write(self, tmp: Path) -> None:
        save_graph(self.graph, tmp)
        (tmp / "manifest.json").write_text(dump_json(self.manifest))
        (tmp / "timings.json").write_text(dump_json(self.timings))
        if self.placement is not None:
            from s4dc.passes.place import placement_json
            (tmp / "placement.json").write_text(placement_json(self.placement))
        from s4dc.report import write_html
        write_html(tmp)  # OUT/report.html: placement, numerics and cost in a browser


def is_s4dc_folder(folder: Path) -> bool:
    """A folder with our manifest.json (format s4dc-net, any version)."""
    try:
        doc = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == NET_FORMAT


def check_output(out: Path, force: bool = False) -> str:
    """How `save` may write `out`: "replace" (absent, an s4dc folder holding
    only s4dc's files, or a file with force) or "merge" (s4dc's files put into
    an existing folder that holds others too). Raises OutputError otherwise,
    before any work is done (the CLI calls it before compiling)."""
    out = Path(out)
    if out.is_dir():
        cwd = Path.cwd().resolve()
        inside = out.resolve() == cwd or out.resolve() in cwd.parents
        if not is_s4dc_folder(out):
            if not force:
                raise OutputError(f"{out}: exists and is not an s4dc output folder (no s4dc manifest.json); "
                                  "pass --force (force=True) to add the network's files to it, nothing else is "
                                  "touched")
            clash = [n for n in OUT_FILES if (out / n).exists() or (out / n).is_symlink()]
            if clash:
                raise OutputError(f"{out}: holds a {clash[0]} that s4dc did not write; s4dc will not replace it, "
                                  "even with --force")
        try:
            only_ours = all(p.name in OUT_FILES for p in out.iterdir())
        except OSError as e:
            raise OutputError(f"{out}: cannot read the folder ({e.strerror or e})") from None
        return "replace" if only_ours and is_s4dc_folder(out) and not inside and not out.is_symlink() else "merge"
    if out.exists() or out.is_symlink():
        if not force:
            raise OutputError(f"{out}: is a file, not a folder; pass --force (force=True) to replace it")
        return "replace"
    if out.parent.exists() and not out.parent.is_dir():
        raise OutputError(f"{out}: the parent {out.parent} is not a folder")
    return "replace"


def _merge(tmp: Path, out: Path) -> None:
    """Move the new files into `out` one by one (each replace is atomic) and
    drop s4dc's own files that the new network does not have."""
    was_ours = is_s4dc_folder(out)
    new = {p.name for p in tmp.iterdir()}
    for name in sorted(new - {"manifest.json"}) + ["manifest.json"]:  # manifest last: the folder is ours once it lands
        os.replace(tmp / name, out / name)
    if was_ours:
        for name in OUT_FILES:
            if name not in new and (out / name).is_file():
                (out / name).unlink()


def load(folder: str | os.PathLike) -> Network:
    """Load a network written by `Network.save` (or `s4dc MODEL -o OUT`).
    Anything missing, truncated or malformed is a NetworkFormatError naming
    the folder and the file."""
    plugins.load()  # a graph with out-of-tree ops verifies only once they are registered
    folder = Path(folder)
    manifest = read_manifest(folder)
    try:
        graph = verify(load_graph(folder))
    except NetworkFormatError:
        raise  # already names the folder and the file
    except S4dcError as e:
        raise NetworkFormatError(f"{folder}/graph.json: not a valid network ({e})") from None
    except KeyError as e:
        raise NetworkFormatError(f"{folder}: graph.json and params.npz disagree "
                                 f"({e.args[0] if e.args else e})") from None
    except Exception as e:  # a hand-edited graph.json/params.npz: missing keys, wrong types
        raise NetworkFormatError(f"{folder}: graph.json or params.npz is malformed "
                                 f"({type(e).__name__}: {first_line(e)})") from None
    if not isinstance(graph.meta, dict) or not all(isinstance(l.attrs, dict) for l in graph.layers):
        raise NetworkFormatError(f"{folder}/graph.json: 'meta' and every layer's 'attrs' must be objects")
    features = graph.input_layer.attrs.get("features")
    if manifest["io"]["input"].get("features") != features:
        raise NetworkFormatError(f"{folder}/manifest.json: input features {manifest['io']['input'].get('features')!r}"
                                 f" disagree with graph.json's {features!r}")
    try:
        timings = json.loads((folder / "timings.json").read_text())
    except (OSError, ValueError):
        timings = {}
    placement = None
    if "placement" in manifest["files"]:
        try:
            placement = json.loads((folder / str(manifest["files"]["placement"])).read_text())
        except (OSError, ValueError) as e:
            raise NetworkFormatError(f"{folder}: placement.json unreadable ({e})") from None
        if not isinstance(placement, dict):
            raise NetworkFormatError(f"{folder}/placement.json: not a placement document (a JSON "
                                     f"{type(placement).__name__})")
    try:
        return Network(graph, manifest, timings if isinstance(timings, dict) else {}, placement)
    except S4dcError as e:
        raise NetworkFormatError(f"{folder}: the saved network cannot be run ({e})") from None
    except Exception as e:  # parameters of the wrong shape or dtype for their layer
        raise NetworkFormatError(f"{folder}: params.npz does not fit graph.json "
                                 f"({type(e).__name__}: {first_line(e)})") from None


def read_manifest(folder: Path) -> dict[str, Any]:
    """OUT/manifest.json, checked: an s4dc-net document of this version with
    the sections the loader reads. `s4dc report` uses it too."""
    if not folder.is_dir():
        raise NetworkFormatError(f"{folder}: not a folder" if folder.exists() else f"{folder}: no such folder")
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        raise NetworkFormatError(f"{folder}: not an s4dc network (manifest.json: {why})") from None
    if not isinstance(manifest, dict):
        raise NetworkFormatError(f"{folder}/manifest.json: not an s4dc manifest (a JSON {type(manifest).__name__}, "
                                 "expected an object)")
    if manifest.get("format") != NET_FORMAT or manifest.get("format_version") != NET_FORMAT_VERSION:
        raise NetworkFormatError(f"{folder}/manifest.json: format {manifest.get('format')!r} version "
                                 f"{manifest.get('format_version')!r}; this s4dc reads {NET_FORMAT} "
                                 f"version {NET_FORMAT_VERSION}")
    io, files = manifest.get("io"), manifest.get("files")
    if not isinstance(io, dict) or not isinstance(io.get("input"), dict) or not isinstance(io.get("outputs"), list):
        raise NetworkFormatError(f"{folder}/manifest.json: no 'io' section with 'input' and 'outputs'")
    if not isinstance(files, dict):
        raise NetworkFormatError(f"{folder}/manifest.json: no 'files' section")
    for key in ("options", "kernel_lengths"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise NetworkFormatError(f"{folder}/manifest.json: '{key}' is a {type(manifest[key]).__name__}, "
                                     "expected an object")
    lengths = manifest.get("kernel_lengths") or {}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in lengths.values()):
        raise NetworkFormatError(f"{folder}/manifest.json: 'kernel_lengths' must map layers to integer lengths")
    return manifest
