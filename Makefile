# Two commands for a fresh machine: `make repro` (set up + run the study) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
export NO_ALBUMENTATIONS_UPDATE := 1
# pip's mirror set-up here warns once per package; keep real errors visible.
PIP_QUIET := grep -v 'is ignored: it is neither a file nor a directory' || true

.PHONY: install repro test lint bench clean-env

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev]' 2>&1 | $(PIP_QUIET)
	$(VENV)/bin/python -c "import ncseg, torch, segmentation_models_pytorch, mlflow, dvc"
	touch $@

install: $(VENV)/.installed  ## create or refresh the virtual environment

repro: install  ## fetch the demo data from the bundled DVC store and run the whole study
	dvc pull -q data.dvc
	dvc repro

test: install  ## the whole test suite (unit + end-to-end on a tiny profile)
	pytest -q

lint: install
	ruff check src tests benchmarks
	ruff format --check src tests benchmarks

clean-env:
	rm -rf $(VENV)
