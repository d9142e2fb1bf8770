"""Run fuzz cases in worker processes, each case under a time limit.

A worker runs cases in-process (no subprocess per case: compiling is fast)
under an address-space limit, so a model that makes onnx or numpy allocate
gigabytes fails with MemoryError (a finding) instead of taking the machine.
The parent kills a worker whose case runs past the limit (a hang: C++ code
cannot be interrupted from Python) and starts a fresh one.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from collections import Counter
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable

from fuzzing.cases import RUN_SHARE, Outcome

MEMORY_LIMIT = 6 << 30  # bytes of address space per worker


def build(seed: int, index: int, work: Path):
    import numpy as np
    from fuzzing.cases import model_case, net_case

    rng = np.random.default_rng([seed, index])
    if rng.random() < RUN_SHARE:
        return ("net",) + net_case(rng, index, work)
    return ("model",) + model_case(rng, index)


def run_one(seed: int, index: int, work: Path) -> Outcome:
    import warnings
    from fuzzing.cases import classify

    t0 = time.perf_counter()
    try:
        kind, base, what, fn = build(seed, index, work)
    except Exception as e:  # a bug in the fuzzer itself, not in s4dc
        return Outcome(index, "?", "?", [], "other", f"fuzzer: {type(e).__name__}: {e}", "fuzzing", 0.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
        exc = None
    except BaseException as e:  # noqa: BLE001 - every outcome is classified
        if isinstance(e, KeyboardInterrupt):
            raise
        exc = e
    outcome, detail, site = classify(exc)
    return Outcome(index, kind, base, what, outcome, detail, site, time.perf_counter() - t0)


def _worker(conn, seed: int) -> None:
    import resource

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ValueError, OSError):
        pass
    work = Path(tempfile.mkdtemp(prefix="s4dc-fuzz-"))
    try:
        while True:
            index = conn.recv()
            if index is None:
                return
            conn.send(run_one(seed, index, work))
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


class _Worker:
    def __init__(self, ctx, seed: int):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, seed), daemon=True)
        self.proc.start()
        child.close()
        self.index: int | None = None
        self.started = 0.0

    def give(self, index: int) -> None:
        self.index, self.started = index, time.perf_counter()
        self.conn.send(index)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)


def run_cases(seed: int, indices: list[int], workers: int = 2, timeout: float = 30.0,
              progress: Callable[[Outcome, int], None] | None = None) -> list[Outcome]:
    """Every case's outcome, in index order. A case past `timeout` seconds is a
    hang; a worker that dies (signal, out of memory) a crash."""
    ctx = mp.get_context("spawn")  # fresh interpreters: no threads of the parent's libraries carried over
    todo = list(indices)[::-1]
    results: dict[int, Outcome] = {}
    pool = [_Worker(ctx, seed) for _ in range(max(1, min(workers, len(todo))))]
    try:
        for w in pool:
            if todo:
                w.give(todo.pop())
        while any(w.index is not None for w in pool):
            busy = [w for w in pool if w.index is not None]
            # A worker's first case also pays for its start-up (imports).
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=1.0)
            now = time.perf_counter()
            for i, w in enumerate(pool):
                if w.index is None:
                    continue
                done = None
                if w.conn in ready:
                    try:
                        done = w.conn.recv()
                    except EOFError:
                        done = None
                if done is None and (w.proc.sentinel in ready or not w.proc.is_alive()):
                    done = Outcome(w.index, "?", "?", [], "crash", f"worker exit code {w.proc.exitcode}", "worker")
                if done is None and now - w.started > timeout:
                    done = Outcome(w.index, "?", "?", [], "hang", f"over {timeout:.0f} s", "timeout",
                                   now - w.started)
                if done is None:
                    continue
                if done.outcome in ("crash", "hang"):
                    w.kill()
                    w = pool[i] = _Worker(ctx, seed)
                results[done.index] = done
                if progress:
                    progress(done, len(results))
                w.index = None
                if todo:
                    w.give(todo.pop())
    finally:
        for w in pool:
            if w.proc.is_alive():
                try:
                    w.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
                w.proc.join(5)
                if w.proc.is_alive():
                    w.kill()
    return [results[i] for i in sorted(results)]


def summary(results: list[Outcome]) -> tuple[Counter, dict[str, list[Outcome]]]:
    """Counts per outcome, and the failures (not compiled, not S4dcError) by site."""
    counts = Counter(r.outcome for r in results)
    sites: dict[str, list[Outcome]] = {}
    for r in results:
        if r.outcome not in ("compiled", "s4dc"):
            sites.setdefault(r.site or r.detail, []).append(r)
    return counts, sites
