"""Command line: `s4dc MODEL.onnx -o OUT/` compiles, `s4dc run OUT/ X.npy -o Y.npy` runs,
`s4dc report OUT/` summarizes (and rewrites OUT/report.html).

Every S4dcError ends the command with one line on stderr and exit status 2,
and no output is left behind; so do Ctrl-C (status 130) and, with exit
status 3, an internal error (a bug in s4dc; `--debug` shows its traceback).
Warnings (a time length beyond a kernel, saturation, a quantized output far
from float) are one line each.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from s4dc import __version__
from s4dc.atomic import write_atomic
from s4dc.errors import (InputDataError, KernelLengthWarning, OutputError, QuantizationAccuracyWarning, S4dcError,
                         SaturationWarning, first_line)
from s4dc.options import cli_fields, default_of, flag_of

OUR_WARNINGS = (KernelLengthWarning, SaturationWarning, QuantizationAccuracyWarning)


def _compile_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s4dc", description="Compile an ONNX S4D model for Loihi 2. "
                                "Other commands: 's4dc run OUT/ X.npy -o Y.npy'.")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("-o", "--out", required=True, help="output folder (written atomically); an existing one must "
                   "be an s4dc output folder, unless --force")
    p.add_argument("--force", action="store_true", help="write into an existing folder that is not an s4dc output "
                   "folder (its other files are kept), or replace a file")
    add_option_flags(p)
    _add_common(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors and warnings")
    p.add_argument("--version", action="version", version=f"s4dc {__version__}")
    return p


def add_option_flags(p: argparse.ArgumentParser) -> None:
    """One flag per CompileOptions field, with its default and help from there."""
    for f in cli_fields():
        flag, default, meta = flag_of(f), default_of(f), f.metadata
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action="store_false" if default else "store_true",
                           help=meta["help"])
            continue
        kind = {"int | None": int, "float | None": float, "int": int, "float": float}.get(str(f.type), str)
        shown = f" (default {default})" if default is not None else ""
        p.add_argument(flag, dest=f.name, type=kind, default=default, choices=meta.get("choices"),
                       metavar=meta.get("metavar"), help=meta["help"] + shown)


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s4dc run", description="Run a compiled network on an input array.")
    p.add_argument("net", help="compiled network folder")
    p.add_argument("input", help=".npy array, float32, (batch, time, features)")
    p.add_argument("-o", "--out", required=True, help=".npy file for the output")
    p.add_argument("--backend", choices=["sim", "lava"], default="sim",
                   help="sim: s4dc's bit-exact simulator (or the float executor for --float networks); "
                        "lava: Lava's bit-accurate Loihi 2 simulation, through .venv-lava (make .venv-lava)")
    p.add_argument("--strict", action="store_true", default=None,
                   help="make warnings errors: a time length beyond a convolution kernel, saturation beyond "
                        "the threshold (default: the compile's --strict)")
    _add_common(p)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"s4dc: warning: {message}", file=sys.stderr, flush=True)


_default_show = warnings.showwarning


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    """s4dc's own warnings as one line; others as Python shows them."""
    if issubclass(category, OUR_WARNINGS):
        _show_warning(message, category, filename, lineno)
    else:
        _default_show(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warnings
        for cat in OUR_WARNINGS:
            warnings.simplefilter("always", cat)
        try:
            return _dispatch(argv)
        except S4dcError as e:
            if debug and e.__cause__ is not None:
                raise
            print(f"s4dc: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:  # temporary outputs are removed on the way out
            print("s4dc: interrupted; nothing was written", file=sys.stderr)
            return 130
        except Exception as e:  # a bug in s4dc: one line, unless --debug
            if debug:
                raise
            print(f"s4dc: error: internal error in s4dc (a bug; please report it): {type(e).__name__}: {first_line(e)} "
                  "(rerun with --debug for the traceback)", file=sys.stderr)
            return 3


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "run":
        return _run(_run_parser().parse_args(argv[1:]))
    if argv and argv[0] == "report":
        return _report(argv[1:])
    if argv and argv[0] == "compile":
        argv = argv[1:]
    return _compile(_compile_parser().parse_args(argv))


def _report(argv: list[str]) -> int:
    """`s4dc report OUT/`: the folder is checked as `s4dc.load` checks it
    first, so report refuses what run refuses."""
    import s4dc
    from s4dc.report import main as report_main

    folders = [a for a in argv if not a.startswith("-")]
    if folders:
        s4dc.load(folders[0])
    return report_main([a for a in argv if a != "--debug"])


def _compile(a: argparse.Namespace) -> int:
    import s4dc

    from s4dc.network import check_output

    say = (lambda m: None) if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    check_output(Path(a.out), a.force)  # refuse a foreign -o before the work, not after it
    net = s4dc.compile(a.model, progress=say, **{f.name: getattr(a, f.name) for f in cli_fields()})
    out = net.save(a.out, force=a.force)
    if not a.quiet:
        print(_summary(net, out, time.perf_counter() - t0))
    return 0


def _summary(net, out: Path, seconds: float) -> str:
    g = net.graph
    lines = [f"compiled {net.manifest['source']['file']} -> {out}/ in {seconds:.2f} s", "layers:"]
    for line in g.summary().splitlines():
        lines.append("  " + line)
    lines.append("passes:")
    quant = None
    for rec, secs in zip(net.manifest["passes"], net.timings.values()):
        ch = dict(rec["changes"])
        if rec["pass"] == "quantize":
            quant = ch.pop("layers", {})
        text = ", ".join(f"{k}={v}" for k, v in ch.items()) or "no change"
        lines.append(f"  {rec['pass']:<16} {secs * 1e3:8.1f} ms  {text}")
    if quant:
        from s4dc.report.data import bits_used  # a MIMO layer's B and C are weights: the report's columns
        lines.append(f"quantization (calibration: {net.manifest.get('calibration')}):")
        lines.append(f"  {'layer':<24} {'op':<8} {'w/a/b/c bits':<13} {'exp':>4} {'saturations':>11} {'rel error':>10}")
        for name, e in quant.items():
            b = e.get("bits")
            used = bits_used(e["op"], b)
            bits = "/".join(str(v) for v in used[:4]) if used else "-"
            lines.append(f"  {name:<24} {e['op']:<8} {bits:<13} {e['exp_out']:>4} {e['saturations']:>11} "
                         f"{e.get('rel_rms_error', float('nan')):>10.2e}")
    if net.placement is not None:
        from s4dc.passes.place import summary
        lines.append(summary({**net.placement, "timing": {k[len("placement_"):]: v for k, v in net.timings.items()
                                                          if k.startswith("placement_")}}))
    return "\n".join(lines)


def _run(a: argparse.Namespace) -> int:
    import s4dc

    net = s4dc.load(a.net)
    _check_run_output(Path(a.out), Path(a.input))
    try:
        x = np.load(a.input, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputDataError(f"{a.input}: cannot read a .npy array ({first_line(e)})") from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        raise InputDataError(f"{a.input}: an .npz archive, not a .npy array")
    info = None
    if a.backend == "lava":
        from s4dc.targets.lava.runner import run_lava

        from s4dc.network import check_time_length

        x = net.check_input(x)  # the same refusals as the simulator's
        check_time_length(net.kernel_lengths, x.shape[1], net.strict if a.strict is None else a.strict, "run")
        placed = Path(a.net) / "placement.json"  # processes carry their chip and core
        y, info = run_lava(a.net, x, placement=str(placed) if placed.exists() else None)
    else:
        y = _run_with_progress(net, x, quiet=a.quiet, strict=a.strict)
    outs = y if isinstance(y, list) else [y]
    if len(outs) != 1:
        raise InputDataError("the network has several outputs; use the library API")
    try:
        out = write_atomic(a.out, lambda f: np.save(f, outs[0].astype(np.float32)))
    except OSError as e:
        raise OutputError(f"{a.out}: cannot write ({e.strerror or e})") from None
    if not a.quiet:
        if info is not None:
            what = (f"Lava fixed_pt simulation, latency {info['latency_steps']} steps (compensated), "
                    f"{info['s_per_step'] * 1e3:.2f} ms per step, "
                    f"{sum(info.get('saturations', {}).values())} saturated values")
        else:
            what = (f"bit-exact Loihi 2 simulator, {sum(net.saturations.values())} saturated values"
                    if net.quantized else "float executor")
        print(f"{a.input} {tuple(x.shape)} -> {out} {tuple(outs[0].shape)} ({what})", file=sys.stderr)
    return 0


def _check_run_output(out: Path, src: Path) -> None:
    """`run -o` names a file: not a folder, not the input, in a folder that exists."""
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; -o takes the .npy file to write")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise OutputError(f"{out}: is the input file; write the output elsewhere")
    if not out.parent.is_dir():
        raise OutputError(f"{out}: the folder {out.parent} does not exist")


RUN_CHUNK = 1024  # sequences per progress report of `s4dc run`


def _run_with_progress(net, x: np.ndarray, quiet: bool, strict: bool | None = None):
    """net.run over the batch in chunks, reporting progress on stderr for long
    runs (samples are independent, so the outputs are those of one call)."""
    if quiet or np.ndim(x) < 3 or len(x) <= RUN_CHUNK:
        return net.run(x, strict=strict)
    parts, t0 = [], time.perf_counter()
    for i in range(0, len(x), RUN_CHUNK):
        parts.append(net.run(x[i:i + RUN_CHUNK], strict=strict))
        done = min(len(x), i + RUN_CHUNK)
        print(f"  simulated {done}/{len(x)} sequences ({time.perf_counter() - t0:.1f} s)", file=sys.stderr,
              flush=True)
    if isinstance(parts[0], list):
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
    return np.concatenate(parts)


if __name__ == "__main__":
    sys.exit(main())
