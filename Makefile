# Quick start: `make demo` and `make test` do all set-up themselves on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-gpu clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check frontend compiler runtime tests examples bench
	$(BIN)/ruff format --check frontend compiler runtime tests examples bench

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# compileall: byte-code as pip writes it for a regular install (the editable one, with PYTHONDONTWRITEBYTECODE=1,
# would recompile every module in each process that W5 starts: ~15 ms of Python, not of sympile's loading)
bench: $(BENCH_STAMP)
	$(BIN)/python -m compileall -q frontend compiler runtime > /dev/null
	$(BIN)/python bench/run.py

# The GPU benchmark (issue 6). No install step: a lent GPU machine has no internet, so it runs the carried .venv's
# python, else $(PYTHON) (bench/gpu.py then imports sympile from this checkout). Without pycuda or a GPU it says
# so in one line and exits 0. Options: make bench-gpu BENCH_GPU_ARGS='--only G1,G4 --json gpu.json' (--driver cupy
# where only CuPy, not pycuda, is installed)
bench-gpu:
	@py=$(BIN)/python; test -x $$py || py=$(PYTHON); set -x; $$py bench/gpu.py $(BENCH_GPU_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
