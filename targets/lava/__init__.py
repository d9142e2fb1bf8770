"""Lava backend: a compiled network as Lava processes (needs lava-nc, in .venv-lava).

Modules (docs/lava.md):

- `plan`      the mapping as plain data: neuron groups, synapses with lava's
              integer encodings, latencies, checks (no lava import);
- `runner`    `run_lava(OUT, x)` from the main environment: runs the Lava side
              in `.venv-lava` (or $S4DC_LAVA_PYTHON) and reads the results back;
- `run`       the Lava side's entry point: `python -m s4dc.targets.lava.run OUT/ X.npy -o Y.npy`;
- `processes` our Lava processes and models: S4dNeuron (fixed_pt, floating_pt),
              Unit, MessageSource, MessageSink (imports lava);
- `build`     a plan as connected Lava processes, run and read back (imports lava);
- `errors`    LavaSetupError, LavaMappingError, LavaRunError (S4dcError subclasses).

Importing this package imports nothing from lava.
"""
