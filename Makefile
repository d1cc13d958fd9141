# `make repro` sets up the venv and runs the pipeline; `make test` sets up and runs the tests.
VENV ?= .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro test bench

$(VENV)/.installed: requirements.txt requirements-base.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

setup: $(VENV)/.installed

repro: setup
	dvc repro

# 2 test processes: most of an end-to-end test is dvc and interpreter start-up, one thread each, so two
# pay on two cores; `python -m pytest -q` alone runs them in one
test: setup
	python -m pytest -q -n 2

bench: setup
	python bench/epoch_breakdown.py
