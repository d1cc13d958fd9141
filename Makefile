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

test: setup
	python -m pytest -q

bench: setup
	python bench/epoch_breakdown.py
