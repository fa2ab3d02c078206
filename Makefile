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

## run: the main job on its embedded default
run: $(BIN)/alignjax
	$(BIN)/alignjax solve examples/prosecutor_judge.json --mode persuasion --agent 0

## test: the test suite CI runs (slow cases excluded)
test: $(BIN)/alignjax
	$(BIN)/python -m pytest -q -m "not slow"

## test-all: every test, slow ones included
test-all: $(BIN)/alignjax
	$(BIN)/python -m pytest -q

## bench: the side-by-side benchmarks
bench: $(BIN)/alignjax
	$(BIN)/python benchmarks/persuasion_vs_highs.py
	$(BIN)/python benchmarks/alignment_vs_scipy.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
