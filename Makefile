# xlalign front door. `make book` builds the book (the main job); `make test` runs the tests.
# Both set up the virtual environment first (Python 3.11, exact pins from requirements.txt).

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= mini
SET ?=
# Runs computed at once (worker processes); empty: $XLCORE_JOBS, else auto (2 on a CPU, 1 on a GPU).
JOBS ?=
# The data: DATA=path/to/root, or DATA=sample for the built-in demo corpus (numbers mean nothing).
# Default: $XLCORE_DATA if set, else ../shared/data when it exists; with neither, `make book` fetches
# what the profile needs from the public sources into xlcore's download cache (it says how much).
# (DATA and RESULTS count only when given on the command line, not from the environment.)
ifneq ($(origin DATA),command line)
DATA := $(or $(XLCORE_DATA),$(if $(wildcard ../shared/data/README.md),$(abspath ../shared/data),))
endif
XLCORE_DATA := $(DATA)
export XLCORE_DATA
export XLCORE_RUNS ?= $(abspath runs)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup grid book chapter test lint results clean-runs

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

grid: setup
	$(PY) -m xlcore.cli grid --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS)) $(foreach s,$(SET),--set $(s))

# The main job: run the grid, execute every chapter, build the HTML into _build/html; the build
# writes its results archive to _build/results/. RESULTS=archive.zip builds from one, computing nothing.
ifneq ($(origin RESULTS),command line)
RESULTS :=
endif
book: setup
	$(PY) -m xlcore.cli book --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS)) $(if $(RESULTS),--results $(RESULTS))

# Re-execute one chapter with new parameters and rebuild the book, e.g.
#   make chapter CHAPTER=distances PARAMS='pairs=["en-fi"]'
chapter: setup
	@test -n "$(CHAPTER)" || { echo "give CHAPTER=name, e.g. make chapter CHAPTER=distances PARAMS='pairs=[\"en-fi\"]'"; exit 2; }
	$(PY) -m xlcore.cli book --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS)) --chapter $(CHAPTER) $(foreach p,$(PARAMS),--param '$(p)')

results: setup
	$(PY) -m xlcore.cli results

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check xlcore tests benchmarks

clean-runs:
	rm -rf runs
