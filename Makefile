# Two commands: `make study` (install, then run the default study) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed

.PHONY: install study test test-fast ruff lint format dryrun clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

study: install
	$(BIN)/snakemake --profile profiles/default --cores $(CORES)

dryrun: install
	$(BIN)/snakemake --dry-run --quiet

test: install ruff
	$(BIN)/python -m pytest

# the unit tests alone: no Snakemake runs, no training runs over ~10 s, no fuzzing (under 2 minutes on 2 cores)
test-fast: install ruff
	$(BIN)/python -m pytest -m "not slow and not fuzz and not workflow"

# the Python code: ruff's lint rules and its formatter (pyproject.toml [tool.ruff]), before any test runs
ruff: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lint: install
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

format: install
	$(BIN)/snakefmt Snakefile rules

clean:
	rm -rf results resources logs benchmarks .snakemake report.html
