# One task runner: the README and CI call exactly these targets.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install up test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (or run: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

## Install, pull the default model if needed, and run everything (Ctrl-C stops it).
up: install
	$(BIN)/chatbot up

## The whole test suite against the local Postgres and Redis.
test: install
	$(BIN)/chatbot models pull --quiet
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check shared web worker tests bench
	$(BIN)/ruff format --check shared web worker bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix shared web worker tests bench
	$(BIN)/ruff format shared web worker

## Every benchmark; scaling figures into bench/results/latest.json and the README table.
bench: install
	$(BIN)/python bench/retrieval/run.py
	$(BIN)/python bench/stream_latency.py
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest-data .mypy_cache .ruff_cache .coverage
