# Two entry points: `make demo` runs everything on this machine; `make test` runs the tests.
# Both build .venv first: torch is pinned before the project so pip keeps that build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

.PHONY: install demo test
install: $(VENV)/.installed

demo: install
	$(BIN)/coursestream demo

test: install
	$(BIN)/python -m pytest
