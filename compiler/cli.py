"""Command line: `s4dc MODEL.onnx -o OUT/` compiles, `s4dc run OUT/ X.npy -o Y.npy` runs,
`s4dc report OUT/` summarizes (and rewrites OUT/report.html).

Every S4dcError ends the command with one line on stderr and exit status 2,
and no output is left behind.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from s4dc import __version__
from s4dc.atomic import write_atomic
from s4dc.errors import InputDataError, S4dcError
from s4dc.options import cli_fields, default_of, flag_of


def _compile_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s4dc", description="Compile an ONNX S4D model for Loihi 2. "
                                "Other commands: 's4dc run OUT/ X.npy -o Y.npy'.")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("-o", "--out", required=True, help="output folder (written atomically)")
    add_option_flags(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
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
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "run":
            return _run(_run_parser().parse_args(argv[1:]))
        if argv and argv[0] == "report":
            from s4dc.report import main as report_main
            return report_main(argv[1:])
        if argv and argv[0] == "compile":
            argv = argv[1:]
        return _compile(_compile_parser().parse_args(argv))
    except S4dcError as e:
        print(f"s4dc: error: {e}", file=sys.stderr)
        return e.exit_code


def _compile(a: argparse.Namespace) -> int:
    import s4dc

    say = (lambda m: None) if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    net = s4dc.compile(a.model, progress=say, **{f.name: getattr(a, f.name) for f in cli_fields()})
    out = net.save(a.out)
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
        lines.append(f"quantization (calibration: {net.manifest.get('calibration')}):")
        lines.append(f"  {'layer':<24} {'op':<8} {'w/a/b/c bits':<13} {'exp':>4} {'saturations':>11} {'rel error':>10}")
        for name, e in quant.items():
            b = e.get("bits")
            bits = f"{b['weight']}/{b['a']}/{b['b']}/{b['c']}" if b else "-"
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
    try:
        x = np.load(a.input, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputDataError(f"{a.input}: cannot read a .npy array ({e})") from None
    info = None
    if a.backend == "lava":
        from s4dc.targets.lava.runner import run_lava

        placed = Path(a.net) / "placement.json"  # processes carry their chip and core
        y, info = run_lava(a.net, x, placement=str(placed) if placed.exists() else None)
    else:
        y = _run_with_progress(net, x, quiet=a.quiet)
    outs = y if isinstance(y, list) else [y]
    if len(outs) != 1:
        raise InputDataError("the network has several outputs; use the library API")
    out = write_atomic(a.out, lambda f: np.save(f, outs[0].astype(np.float32)))
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


RUN_CHUNK = 1024  # sequences per progress report of `s4dc run`


def _run_with_progress(net, x: np.ndarray, quiet: bool):
    """net.run over the batch in chunks, reporting progress on stderr for long
    runs (samples are independent, so the outputs are those of one call)."""
    if quiet or np.ndim(x) < 3 or len(x) <= RUN_CHUNK:
        return net.run(x)
    parts, t0 = [], time.perf_counter()
    for i in range(0, len(x), RUN_CHUNK):
        parts.append(net.run(x[i:i + RUN_CHUNK]))
        done = min(len(x), i + RUN_CHUNK)
        print(f"  simulated {done}/{len(x)} sequences ({time.perf_counter() - t0:.1f} s)", file=sys.stderr,
              flush=True)
    if isinstance(parts[0], list):
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
    return np.concatenate(parts)


if __name__ == "__main__":
    sys.exit(main())
