"""s4dc's fuzzer: seeded mutants of the shipped and fixture models, and
corrupted OUT/ folders; each must compile (or load and run) or end in an
S4dcError. `benchmarks/fuzz.py` (make fuzz) runs many, tests/test_fuzz.py a slice."""
