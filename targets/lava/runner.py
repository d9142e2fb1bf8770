"""Run a compiled network in Lava from the main environment.

lava-nc 0.10 needs Python 3.10 and numpy < 2, so it lives in its own
environment, `.venv-lava` (`make .venv-lava`). `run_lava` checks the mapping
here (no lava import), then runs `python -m s4dc.targets.lava.run` with that
environment's Python and reads the results back.

    y, info = run_lava("OUT/", x)            # y as FixedSimulator.run / Network.run gives it
    info["latency_steps"]                    # steps from an input token to its output
    y, info = run_lava("OUT/", x, messages=True, trace=True)
    info["messages"]["out"]                  # int64 (batch, time, F): the integers feeding output 'out'
    info["trace"]["layer"]                   # every on-chip layer's integers (FixedSimulator.trace's keys)

The Lava environment's Python: $S4DC_LAVA_PYTHON, else <repo>/.venv-lava/bin/python.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from s4dc.errors import InputDataError, S4dcError
from s4dc.targets.lava import errors as lava_errors
from s4dc.targets.lava.errors import LavaRunError, LavaSetupError

ENV_VAR = "S4DC_LAVA_PYTHON"
SETUP_HINT = "make it with `make .venv-lava` in the s4dc repository, or point S4DC_LAVA_PYTHON at a Python 3.10 " \
             "with lava-nc 0.10.0 and s4dc installed"


def repo_root() -> Path | None:
    """The source checkout s4dc runs from (editable install), if any."""
    import s4dc

    root = Path(s4dc.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").exists() else None


def lava_python() -> str:
    """Path of the Lava environment's Python, or LavaSetupError saying how to make one."""
    env = os.environ.get(ENV_VAR)
    if env:
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise LavaSetupError(f"{ENV_VAR}={env} is not an executable Python; {SETUP_HINT}")
        return env
    root = repo_root()
    cand = root / ".venv-lava" / "bin" / "python" if root else None
    if cand is None or not cand.exists():
        where = f" (looked for {cand})" if cand else ""
        raise LavaSetupError(f"no Lava environment{where}; {SETUP_HINT}")
    return str(cand)


def lava_available() -> bool:
    try:
        lava_python()
        return True
    except LavaSetupError:
        return False


def check(out_dir: str | os.PathLike, placement: str | os.PathLike | None = None) -> dict[str, Any]:
    """Map without running (no lava needed): LavaMappingError if Lava cannot
    hold the network; else the plan's summary (latency_steps, processes, ...)."""
    import s4dc
    from s4dc.targets.lava.plan import plan

    net = s4dc.load(out_dir)
    return plan(net.graph, placement if placement is not None else _default_placement(out_dir)).summary()


def _default_placement(out_dir: str | os.PathLike) -> Path | None:
    p = Path(out_dir) / "placement.json"
    return p if p.exists() else None


def run_lava(out_dir: str | os.PathLike, x: np.ndarray, *, placement: str | os.PathLike | None = None,
             messages: bool = False, trace: bool = False, python: str | None = None,
             timeout: float | None = None) -> tuple[np.ndarray | list[np.ndarray], dict[str, Any]]:
    """Run the compiled network in OUT/ on float input x (batch, time,
    features) in Lava's bit-accurate simulation (Loihi2SimCfg, fixed_pt).

    Returns (y, info). y: shaped as FixedSimulator.run returns it (one
    array, or a list with several outputs), aligned to the ONNX time axis.
    info: latency_steps (input token -> output, in steps), layer_latency,
    steps (Lava steps run: batch * time + the deepest latency), startup_s,
    s_per_step, processes, saturations per layer, warnings; with
    messages=True also "messages" {output layer: int64 (batch, time, F)},
    with trace=True "trace" {layer: int64 (batch, time, F)}.

    Raises LavaSetupError (no Lava environment), LavaMappingError (the
    network does not fit), InputDataError, LavaRunError."""
    check(out_dir, placement)  # fail here, before starting Lava, if it cannot map
    py = python or lava_python()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputDataError(f"input must be float32, got dtype {x.dtype}")
    with tempfile.TemporaryDirectory(prefix="s4dc-lava-run-") as tmp:
        t = Path(tmp)
        np.save(t / "x.npy", x)
        cmd = [py, "-m", "s4dc.targets.lava.run", str(Path(out_dir).resolve()), str(t / "x.npy"),
               "-o", str(t / "y.npz"), "--info", str(t / "info.json")]
        if placement is not None:
            cmd += ["--placement", str(Path(placement).resolve())]
        if messages:
            cmd += ["--messages", str(t / "messages.npz")]
        if trace:
            cmd += ["--int-trace", str(t / "trace")]
        env = dict(os.environ)
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(k, "1")  # Lava runs one OS process per Lava process
        r = _run(cmd, tmp, env, timeout, py)
        if r.returncode != 0:
            raise _error_from(r, py)
        with np.load(t / "y.npz") as z:
            outs = [z[k] for k in z.files]
        info = json.loads((t / "info.json").read_text())
        if messages:
            with np.load(t / "messages.npz") as z:
                info["messages"] = {k: z[k] for k in z.files}
        if trace:
            with np.load(t / "trace" / "trace.npz") as z:
                info["trace"] = {k: z[k] for k in z.files}
    return (outs[0] if len(outs) == 1 else outs), info


def _run(cmd: list[str], cwd: str, env: dict, timeout: float | None, py: str) -> subprocess.CompletedProcess:
    """Run the Lava side in its own process group: Lava forks one OS process
    per Lava process, and a timeout must end them all, not just the parent."""
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    except OSError as e:
        raise LavaSetupError(f"cannot execute {py} ({e.strerror}); {SETUP_HINT}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        raise LavaRunError(f"the Lava run did not finish in {timeout} s (stopped)") from None
    except BaseException:
        _stop_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM first (the Lava side stops its runtime and frees its shared
    memory), then SIGKILL whatever of the group is left."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=grace)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.communicate()


def _error_from(r: subprocess.CompletedProcess, py: str) -> S4dcError:
    err = r.stderr or ""
    for line in reversed(err.splitlines()):
        if line.startswith("s4dc-lava-error: "):
            name, _, msg = line[len("s4dc-lava-error: "):].partition(": ")
            cls = getattr(lava_errors, name, None)
            if cls is None:
                import s4dc.errors as base

                cls = getattr(base, name, LavaRunError)
            return cls(msg)
    if "No module named 'lava'" in err or "No module named 's4dc'" in err:
        return LavaSetupError(f"{py} lacks lava-nc or s4dc; {SETUP_HINT}")
    tail = " | ".join(l for l in err.strip().splitlines()[-3:])
    return LavaRunError(f"the Lava run failed (exit status {r.returncode}): {tail or 'no message'}")

