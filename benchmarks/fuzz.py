"""`make fuzz`: seeded mutants of the shipped and fixture models (byte flips,
truncation; op types, attributes, initializers' dtype/shape/values, wiring,
opsets, a dynamic time axis, function bodies) compiled in-process, and
corrupted OUT/ folders loaded, run and reported. Every case must compile or
end in an S4dcError; anything else, and any hang, is listed by site.

    .venv/bin/python benchmarks/fuzz.py --cases 10000 [--seed 0] [--workers 2] [--timeout 30]
    .venv/bin/python benchmarks/fuzz.py --case 1234      # rerun one case, with its traceback

Exit status 1 if any case ended otherwise.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzzing.runner import run_cases, summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--start", type=int, default=0, help="first case index")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it counts as a hang")
    p.add_argument("--case", type=int, help="run this one case here, in-process, and show its traceback")
    a = p.parse_args(argv)
    if a.case is not None:
        return _one(a.seed, a.case)
    t0 = time.perf_counter()
    step = max(a.cases // 20, 1)

    def progress(r, done: int) -> None:
        if done % step == 0 or r.outcome not in ("compiled", "s4dc"):
            mark = "" if r.outcome in ("compiled", "s4dc") else f"  case {r.index}: {r.outcome} {r.detail} at {r.site}"
            print(f"  {done}/{a.cases} ({time.perf_counter() - t0:.0f} s){mark}", flush=True)

    results = run_cases(a.seed, list(range(a.start, a.start + a.cases)), a.workers, a.timeout, progress)
    counts, sites = summary(results)
    errors = sorted({r.detail for r in results if r.outcome == "s4dc"})
    print(f"\nfuzz: seed {a.seed}, {len(results)} cases in {time.perf_counter() - t0:.0f} s on {a.workers} workers")
    print(f"  compiled (or loaded and ran): {counts['compiled']}")
    print(f"  S4dcError:                    {counts['s4dc']}  ({len(errors)} classes: {', '.join(errors)})")
    print(f"  internal error (bug):         {counts['internal']}")
    print(f"  other exception:              {counts['other']}")
    print(f"  hang:                         {counts['hang']}")
    print(f"  crash:                        {counts['crash']}")
    print(f"  distinct failure sites:       {len(sites)}")
    for site, rs in sorted(sites.items(), key=lambda kv: -len(kv[1])):
        r = rs[0]
        more = ", ".join(str(x.index) for x in rs[1:10])
        print(f"    {len(rs):5d}x {site}" + (f" (also cases {more})" if more else ""))
        print(f"           e.g. case {r.index}: {r.base}: {'; '.join(r.mutation)[:240]}\n           {r.detail[:240]}")
    return 1 if sites else 0


def _one(seed: int, index: int) -> int:
    """Rerun one case in this process, printing the mutation and the traceback."""
    import tempfile
    import traceback

    from fuzzing.runner import build

    kind, base, what, fn = build(seed, index, Path(tempfile.mkdtemp(prefix="s4dc-fuzz-")))
    print(f"case {index} ({kind}): {base}: {'; '.join(what)}")
    try:
        fn()
        print("compiled")
    except Exception:
        traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
