# s4dc: `make demo` and `make test` work from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all setup deps lint demo test bench bench-compile bench-accuracy bench-sim bench-place bench-report bench-cost fuzz fixtures finetune clean

all: test

# The main environment: numpy, networkx, onnx, onnxruntime, ortools, pytest,
# scipy (tests only), numba, torch (CPU build; s4dc.torch and its tests,
# fixtures, examples), s4dc itself in editable mode. torch is pinned first so
# the `torch` extra's range is already met (an unpinned torch would pull a
# multi-GB CUDA build).
TORCH_PIN ?= torch==2.13.0
# Third-party SSM libraries, for the tests only (tests/test_adapters*.py): exact
# versions with --no-deps so none can replace the pinned torch; lrnnx and
# s5-pytorch are source packages built against this venv's torch (lrnnx builds
# no CUDA extension without CUDA_HOME).
SSM_TEST_DEPS := einops==0.8.2 opt-einsum==3.4.0 setuptools==84.2.1 wheel==0.48.0
SSM_TEST_LIBS := lrnnx==1.0.0.post1 s5-pytorch==0.2.1 lru-pytorch==0.1.3
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '$(TORCH_PIN)'
	$(PY) -m pip install --quiet -e '.[test,jit,torch,lint]'
	$(PY) -m pip install --quiet --no-deps $(SSM_TEST_DEPS)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation $(SSM_TEST_LIBS)
	$(PY) -c "import torch; assert torch.__version__.split('+')[0] == '$(subst torch==,,$(TORCH_PIN))', torch.__version__"
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# The Lava venv is built first when a Python 3.10 is available; without one
# the Lava tests skip and say why, as do the browser tests without Chromium
# (`make deps` installs it) and the numba tests without numba. With
# S4DC_NO_SKIPS=1 (what .ci/run sets) every skip is a failure instead.
test: $(STAMP)
	-@$(MAKE) --no-print-directory $(LAVA_STAMP)
	$(PY) -m pytest -q -n 2 tests

# ruff on the whole tree; mypy on the public API (the package as installed:
# mypy cannot see the package-dir mapping in the source tree).
TYPECHECK := build/typecheck
lint: $(STAMP)
	$(PY) -m ruff check compiler ir passes targets tests benchmarks examples
	rm -rf $(TYPECHECK) && $(PY) -m pip install --quiet --no-deps --target $(TYPECHECK) . 2>&1 | grep -v '^WARNING' || true
	cd $(TYPECHECK) && $(CURDIR)/$(PY) -m mypy --config-file $(CURDIR)/pyproject.toml \
		-m s4dc -m s4dc.api -m s4dc.options -m s4dc.registry -m s4dc.network -m s4dc.errors \
		-p s4dc.ir -m s4dc.passes.base

bench: bench-compile bench-accuracy bench-sim bench-place bench-report

bench-compile: $(STAMP)
	$(PY) benchmarks/compile_time.py
	$(PY) benchmarks/compile_time.py --mimo

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package.
FASHION := /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
$(FASHION):
	apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist

# System packages, from Debian (apt-get, as root): Chromium for the report's
# browser tests, Fashion-MNIST for the benchmarks and the fine-tuning example.
deps: chromium $(FASHION)

bench-accuracy: $(STAMP) $(FASHION)
	$(PY) benchmarks/accuracy.py

bench-sim: $(STAMP) $(FASHION)
	$(PY) benchmarks/sim_throughput.py

# Quantization-aware fine-tuning of the Fashion-MNIST model at 4-bit weights
# (examples/fashion/finetune.py; writes model_w4_qat.onnx, finetune_metrics.json).
finetune: $(STAMP) $(FASHION)
	$(PY) examples/fashion/finetune.py

bench-place: $(STAMP)
	$(PY) benchmarks/placement.py

# The cost model against published Loihi 2 measurements (docs/hardware_model.md).
bench-cost: $(STAMP)
	$(PY) benchmarks/cost.py

# Malformed models and run inputs, mutated from the shipped ones (seeded):
# every case must compile or end in an S4dcError, none may hang.
fuzz: $(STAMP)
	$(PY) benchmarks/fuzz.py --cases 10000

bench-report: $(STAMP) chromium
	$(PY) benchmarks/report_load.py

fixtures: $(STAMP)
	$(PY) tests/fixtures/make_torch_fixtures.py
	$(PY) tests/fixtures/make_scan_fixtures.py
	$(PY) tests/fixtures/make_mimo_fixtures.py
	$(PY) tests/fixtures/make_torch_mimo_fixtures.py

clean:
	rm -rf $(VENV) .venv-lava out .pytest_cache

# --- Lava backend -------------------------------------------------------------
# .venv-lava: Python 3.10 (lava-nc 0.10.0 needs >=3.10,<3.11), lava-nc with its
# pins, s4dc in editable mode. The Python 3.10: PYTHON310 if set, else the
# first that runs of python3.10 on PATH, pyenv's 3.10.13, any pyenv 3.10.x.
PYTHON310 ?= $(shell for p in python3.10 "env PYENV_VERSION=3.10.13 python3.10" \
	$$(ls -d $$(pyenv root 2>/dev/null)/versions/3.10.*/bin/python3.10 2>/dev/null | sort -r); do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 10); print(sys.executable)' 2>/dev/null && break; done)
LAVA_VENV  := .venv-lava
LAVA_PY    := $(LAVA_VENV)/bin/python
LAVA_STAMP := $(LAVA_VENV)/.installed

.PHONY: test-lava bench-lava clean-lava

$(LAVA_STAMP): pyproject.toml
	@test -n "$(PYTHON310)" || { echo "make $(LAVA_VENV): no Python 3.10 found (lava-nc 0.10.0 needs >=3.10,<3.11); install one or set PYTHON310=/path/to/python3.10" >&2; exit 1; }
	$(PYTHON310) -m venv $(LAVA_VENV)
	$(LAVA_PY) -m pip install --quiet --upgrade pip
	$(LAVA_PY) -m pip install --quiet lava-nc==0.10.0 'numpy>=1.24.4,<2' 'networkx<=2.8.7' 'scipy>=1.10.1,<2' 'scikit-learn>=1.5,<2' -e .
	$(LAVA_PY) -c "import lava.magma.core.run_configs, s4dc.targets.lava.build"
	touch $@

$(LAVA_VENV): $(LAVA_STAMP)

test-lava: $(STAMP) $(LAVA_STAMP)
	$(PY) -m pytest -q tests/test_lava.py

bench-lava: $(STAMP) $(LAVA_STAMP)
	$(PY) benchmarks/lava_vs_sim.py

clean-lava:
	rm -rf $(LAVA_VENV)

# --- Reports: a headless browser ------------------------------------------------
# tests/test_report.py opens report.html in Debian's chromium (its browser
# checks skip, saying why, without one); report-screenshots rewrites the
# screenshots in docs/ (docs/report.md).
CHROMIUM_FLAGS := --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
	--force-device-scale-factor=1 --window-size=1400,1280

.PHONY: chromium report-screenshots

chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq chromium; }

report-screenshots: $(STAMP) chromium
	$(VENV)/bin/s4dc examples/digits/model.onnx -o out/report_digits --calibration examples/digits/calibration.npz -q
	$(PY) -c "import sys, onnx; sys.path.insert(0, 'benchmarks'); from compile_time import conv_form_model; \
		onnx.save(conv_form_model(layers=4, H=128, N=64, L=256), 'out/conv4_h128.onnx')"
	$(VENV)/bin/s4dc out/conv4_h128.onnx -o out/report_conv4 --chips 1 -q
	$(VENV)/bin/s4dc examples/fashion/model.onnx -o out/report_fashion --calibration examples/fashion/calibration.npz -q
	for n in digits fashion conv4; do \
		$(PY) -m s4dc.report out/report_$$n --html && d=$$(mktemp -d) && \
		$$(command -v chromium || command -v chromium-browser) $(CHROMIUM_FLAGS) --user-data-dir=$$d \
			--screenshot=docs/report_$$n.png file://$(CURDIR)/out/report_$$n/report.html 2>/dev/null; \
		rm -rf $$d; done
	$(PY) benchmarks/cost.py --tradeoff-png docs/report_tradeoff.png
