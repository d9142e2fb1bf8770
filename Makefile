# s4dc: `make demo` and `make test` work from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all setup demo test bench bench-compile bench-accuracy bench-sim fixtures clean

all: test

# The main environment: numpy, networkx, onnx, onnxruntime, ortools, pytest,
# scipy (tests only), s4dc itself in editable mode.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,jit]'
	touch $@

setup: $(STAMP)

# torch (CPU build, from the wheel this machine kind keeps on disk) is only
# needed to regenerate fixtures and retrain examples.
$(VENV)/.torch: $(STAMP)
	$(PY) -m pip install --quiet torch==2.13.0 onnxscript
	touch $@

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

bench: bench-compile bench-accuracy bench-sim

bench-compile: $(STAMP)
	$(PY) benchmarks/compile_time.py

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package.
FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
$(FASHION):
	apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist

bench-accuracy: $(STAMP) $(FASHION)
	$(PY) benchmarks/accuracy.py

bench-sim: $(STAMP) $(FASHION)
	$(PY) benchmarks/sim_throughput.py

fixtures: $(VENV)/.torch
	$(PY) tests/fixtures/make_torch_fixtures.py
	$(PY) tests/fixtures/make_scan_fixtures.py

clean:
	rm -rf $(VENV) out .pytest_cache
