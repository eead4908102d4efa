# cass-hpc — the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs
DEMO_DATA ?= data/demo

.PHONY: help install demo test test-slow lint lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install the locked dependencies + this project (no-op when done)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: install  ## pack the synthetic demo set, run the CASS vs supervised grid on CPU, print the table
	@start=$$(date +%s); set -e; \
	$(PY) -m preprocess synthetic shapes $(DEMO_DATA) --image-size 64 --per-class 150 --overwrite; \
	$(PY) -m cass_hpc.run --multirun experiment=demo runs_dir=$(RUNS) dataset.path=$(DEMO_DATA); \
	$(PY) -m cass_hpc.collect $(RUNS)/demo; \
	echo "demo finished in $$(( $$(date +%s) - start )) s (after installation); data were SYNTHETIC shapes"

test: install  ## lint, then run the default test suite (< 10 min on 2 cores)
	$(PY) -m ruff check cass_hpc preprocess tests
	$(PY) -m pytest

test-slow: install  ## run the slow tests only
	$(PY) -m pytest -m slow

lint: install  ## ruff lint + format check
	$(PY) -m ruff check cass_hpc preprocess tests
	$(PY) -m ruff format --check cass_hpc preprocess tests

lock:  ## rewrite requirements.lock from the current .venv
	{ echo "# Exact versions installed by 'make install' (pip freeze of a working venv; Python 3.11, linux x86_64)."; \
	  echo "# Regenerate with: make lock"; $(PY) -m pip freeze --exclude-editable; } > requirements.lock

clean:  ## remove demo data and runs (keeps .venv)
	rm -rf $(RUNS) $(DEMO_DATA)
