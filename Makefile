# xlalign front door. `make grid` runs the default experiment grid; `make test` runs the tests.
# Both set up the virtual environment first (Python 3.11, exact pins from requirements.txt).

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= mini
SET ?=
# The real data root: $XLCORE_DATA if set, else ../shared/data when it exists; otherwise xlcore
# falls back to its download cache, then to the built-in sample corpus (and says so).
XLCORE_DATA ?= $(if $(wildcard ../shared/data/README.md),$(abspath ../shared/data),)
export XLCORE_DATA
export XLCORE_RUNS ?= $(abspath runs)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup grid test lint results clean-runs

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

grid: setup
	$(PY) -m xlcore.cli grid --profile $(PROFILE) $(foreach s,$(SET),--set $(s))

results: setup
	$(PY) -m xlcore.cli results

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check xlcore tests benchmarks

clean-runs:
	rm -rf runs
