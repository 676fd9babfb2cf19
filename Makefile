# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates ./.venv on first use and reinstalls when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit crash-full bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## demo: a real rotation on the local MotherDuck simulator into the file backend
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## test: lint, type check and the whole test suite (unit + integration with real servers)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/run_pytest.py

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python scripts/run_pytest.py tests/unit

crash-full: $(STAMP)
	$(BIN)/python scripts/run_pytest.py --run-slow tests/integration/test_crash_harness.py

## bench: the performance runs behind docs/performance.md, then its plots and issue 16's table
##        (benchmarks/report.py; ~10 min on 2 cores; loopback only)
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-run
