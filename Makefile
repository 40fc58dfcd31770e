# Two entry points for a fresh machine (see README):
#   make demo   installs orchestrion into .venv and runs the main job on the shipped sample
#   make test   installs orchestrion with its dev tools into .venv and runs the test suite
#   (make test-fast: the dev loop, under two minutes; make docs: the documentation site)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# the dev loop: everything but the real datasets, the browser, the processes and the slow files
FAST   := not slow and not browser and not datasets and not processes
# `make test` runs on WORKERS pytest-xdist processes, each taking whole files (--dist loadfile: a
# file's module fixtures, a server or a notebook's run, are built once, on one worker), in the
# order tests/conftest.py gives them: the heaviest tiers first (--no-loadscope-reorder keeps it)
WORKERS ?= 2
XDIST  := -n $(WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: install demo test test-fast lint docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/orchestrion demo

test: install
	$(BIN)/python -m pytest -q --durations=25 $(XDIST)

test-fast: install
	$(BIN)/python -m pytest -q -m "$(FAST)" --durations=10

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports --no-logo
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs: install
	$(BIN)/mkdocs serve

bench: install
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) data/orchestrion.duckdb* data/outbox
