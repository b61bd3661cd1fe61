# Two commands for a fresh machine: `make repro` (set up + run the study) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
export NO_ALBUMENTATIONS_UPDATE := 1
# pip's mirror set-up here warns once per package; keep real errors visible.
PIP_QUIET := grep -v 'is ignored: it is neither a file nor a directory' || true

.PHONY: install repro test lint bench real-data real-data-binary real-data-import clean-env

# The study needs the core only (no napari, no Qt); the tests need the dev extras (napari, export, team).
$(VENV)/.core: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e . 2>&1 | $(PIP_QUIET)
	$(VENV)/bin/python -c "import ncseg, torch, segmentation_models_pytorch, mlflow, dvc"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.core
	$(VENV)/bin/pip install -q -e '.[dev]' 2>&1 | $(PIP_QUIET)
	touch $@

install: $(VENV)/.installed  ## create or refresh the virtual environment with the dev extras

repro: $(VENV)/.core  ## fetch the demo data from the bundled DVC store and run the whole study
	dvc pull -q data.dvc
	dvc repro

test: install  ## the whole test suite (unit + end-to-end on a tiny profile)
	pytest -q

REAL := ../shared/datasets/haadf-pt-alumina
STUDY := studies/pt-alumina-classes/params.yaml
BINARY := studies/pt-alumina/params.yaml
PROFILE ?=
ON_PROFILE := $(if $(PROFILE),-S profile=$(PROFILE))

# real-data: the 3-class study on the real HAADF-STEM dataset beside the project (PROFILE=peers|gpu: with the peers);
# real-data-binary: the same images and folds as one material class (PROFILE=gpu: larger, on a GPU)
real-data: PARAMS := $(STUDY)
real-data-binary: PARAMS := $(BINARY)
real-data real-data-binary: real-data-import
	ncseg train -p $(PARAMS) $(ON_PROFILE)
	ncseg evaluate -p $(PARAMS) $(ON_PROFILE)
	ncseg register -p $(PARAMS) $(ON_PROFILE)

real-data-import: install  ## the real dataset, imported with its labels/ as classes/, into studies/pt-alumina/data
	ncseg data import $(REAL)/images $(REAL)/masks --groups $(REAL)/manifest.csv --group-column source_slice \
		--classes $(REAL)/labels --out studies/pt-alumina/data/raw --force
	ncseg data augment -p $(STUDY)

bench: install  ## speed and memory figures -> benchmarks/results.md
	python -m benchmarks.run
	python -m benchmarks.loader

lint: install  ## ruff, and the import-linter layer contracts (pyproject.toml)
	ruff check src tests benchmarks
	lint-imports
	ruff format --check src tests benchmarks

clean-env:
	rm -rf $(VENV)
