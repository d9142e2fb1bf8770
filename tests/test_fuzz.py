"""The fuzzer's CI slice: 300 seeded cases (benchmarks/fuzz.py runs 10,000 in
`make fuzz`). Every case must compile (or load and run) or end in an
S4dcError; an internal error, any other exception, a crash or a hang fails."""
from __future__ import annotations

from fuzzing.runner import run_cases, summary

SEED, CASES = 14, 300


def test_fuzz_slice():
    results = run_cases(SEED, list(range(CASES)), workers=2, timeout=60)
    counts, sites = summary(results)
    assert len(results) == CASES
    assert counts["compiled"] > 0 and counts["s4dc"] > 0, counts  # the slice reaches both ends
    report = [f"{len(rs)}x {site}: case {rs[0].index} ({rs[0].base}: {'; '.join(rs[0].mutation)}): {rs[0].detail}"
              for site, rs in sites.items()]
    assert not sites, "\n".join(report) + f"\nrerun one: .venv/bin/python benchmarks/fuzz.py --seed {SEED} --case N"
