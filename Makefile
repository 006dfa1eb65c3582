# ntkit: two commands for a newcomer.
#   make tour   - create .venv, install ntkit with its native extension (runtime dependencies only), run the
#                 tour on bundled data -> tour/report.html
#   make test   - same install plus the test and docs extras (into the same .venv), then the whole test suite
# Other targets: make bench (benchmarks -> benchmarks/RESULTS.md), make docs (site/), make interop (neural-tangents golden values),
# make info (which backends are built), make sanitize / make sanitize-cuda (native tests under ASan+UBSan /
# compute-sanitizer), make clean.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ntkit-installed
BENCH_ARGS ?= --large
NATIVE_SOURCES := $(shell find ntkit_native/csrc -type f 2>/dev/null) setup.py pyproject.toml

.PHONY: install test tour bench docs interop info sanitize sanitize-cuda clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Editable install: Python edits need no reinstall; the extension rebuilds when its sources change.
$(STAMP): $(BIN)/python $(NATIVE_SOURCES)
	$(BIN)/python -m pip install -q "setuptools>=64" wheel "pybind11>=2.12" "jax>=0.6"  # jax: XLA FFI headers for the build
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[test]"
	@$(BIN)/python -c "import ntkit; ntkit.show_backends()"
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest

# The tour needs the runtime only: `pip install -e .` without the test/docs extras, under its own stamp.
# An up-to-date full install (make install/test) already satisfies it; a later `make test` adds the extras.
# Progress (a heading per section with the elapsed time, bars) goes to stderr; TOUR_ARGS=--quiet turns it off.
TOUR_STAMP := $(VENV)/.ntkit-runtime-installed
TOUR_ARGS  ?=

$(TOUR_STAMP): $(BIN)/python $(NATIVE_SOURCES)
	@if [ -f $(STAMP) ] && [ -z "$$(find $(NATIVE_SOURCES) -newer $(STAMP) 2>/dev/null)" ]; then \
	  echo "ntkit is already installed in $(VENV) (make install/test, with the extras)"; \
	else \
	  $(BIN)/python -m pip install -q "setuptools>=64" wheel "pybind11>=2.12" "jax>=0.6" && \
	  $(BIN)/python -m pip install -q --no-build-isolation -e . && \
	  $(BIN)/python -c "import ntkit; ntkit.show_backends()"; \
	fi
	@touch $@

tour: $(TOUR_STAMP)
	$(BIN)/ntkit tour --out tour $(TOUR_ARGS)

bench: install
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# The documentation site (MkDocs Material + mkdocstrings, numpy docstrings; docs/hooks.py runs the
# notebooks at small sizes during the build) into site/; warnings, and notebooks that fail, are errors.
docs: install
	$(BIN)/mkdocs build --strict -d site

info: install
	$(BIN)/ntkit info

# ntkit_native built with AddressSanitizer + UBSan into build/sanitize/ (the editable install is left
# alone) and the tests that reach it run against that build; see tools/sanitize.sh.
sanitize: install
	PYTHON_BIN=$(abspath $(BIN)/python) tools/sanitize.sh asan

# CUDA build (-lineinfo) into build/sanitize-cuda/, tests/native/cuda_smoke.py under compute-sanitizer
# memcheck and racecheck; prints that it skipped when nvidia-smi finds no GPU.
sanitize-cuda: install
	PYTHON_BIN=$(abspath $(BIN)/python) tools/sanitize.sh cuda

# neural-tangents 0.6.5 only runs on jax 0.4.25 / numpy < 2: a pinned side environment regenerates
# the golden values the test suite compares against (tests/golden/*.npz).
.venv-interop/bin/python:
	$(PYTHON) -m venv .venv-interop
	.venv-interop/bin/python -m pip install -q "jax[cpu]==0.4.25" "numpy<2" "tf2jax==0.3.6" neural-tangents==0.6.5

interop: .venv-interop/bin/python
	.venv-interop/bin/python tests/golden/make_golden_kernels.py
	.venv-interop/bin/python tests/golden/make_golden_entk.py
	.venv-interop/bin/python tests/golden/make_golden_stax.py
	.venv-interop/bin/python tests/golden/make_golden_predict.py
	.venv-interop/bin/python tests/golden/make_golden_finite.py

clean:
	rm -rf build *.egg-info ntkit_native/_C*.so tour site .pytest_cache
