# s4dc: `make demo` and `make test` work from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all setup demo test bench-compile fixtures clean

all: test

# The main environment: numpy, networkx, onnx, onnxruntime, ortools, pytest,
# scipy (tests only), s4dc itself in editable mode.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
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

bench-compile: $(STAMP)
	$(PY) benchmarks/compile_time.py

fixtures: $(VENV)/.torch
	$(PY) tests/fixtures/make_torch_fixtures.py
	$(PY) tests/fixtures/make_scan_fixtures.py

clean:
	rm -rf $(VENV) out .pytest_cache
