# Set-up and entry points. Every target creates the virtual environment on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-all bench clean

$(BIN)/alignjax: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

## run: the main job (the sweep) on its embedded default; outputs in runs/default
run: $(BIN)/alignjax
	$(BIN)/alignjax sweep --out runs/default

# Compiled programs are cached on disk and shared by the test processes and the
# command-line runs the tests start (XLA compilation dominates the suite's time).
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache

## test: the test suite CI runs (slow cases excluded), on two worker processes, whole
## files heaviest first (tests/conftest.py orders them; --no-loadscope-reorder keeps it)
test: $(BIN)/alignjax
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile --no-loadscope-reorder --durations=15

## test-all: every test, slow ones included
test-all: $(BIN)/alignjax
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

## bench: the side-by-side benchmarks
bench: $(BIN)/alignjax
	$(BIN)/python benchmarks/persuasion_vs_highs.py
	$(BIN)/python benchmarks/alignment_vs_scipy.py
	$(BIN)/python benchmarks/simultaneous_scaling.py
	$(BIN)/python benchmarks/certificates.py
	$(BIN)/python benchmarks/state_scaling.py
	$(BIN)/python benchmarks/conversation_memory.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
