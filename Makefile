# The commands people type. Each is a thin wrapper: the analysis lives in notebooks/ (run by dvc.yaml),
# the method in gadlib/, the project's own scripts in tools/.
#   make repro   set up (once), obtain the data, run the pipeline (dvc repro), record its timings
#   make test    set up (once), obtain the data, run the whole test suite
#   make lab     JupyterLab with the project's kernel ("Python (gadlib)"), as a user or as root
#   make shell   a shell with .venv active, for dvc commands typed by hand (dvc exp run -S ...)
#   make bench   the benchmark (reports/bench.json)
#   make compare the DVC runs' headline numbers in 80 columns (dvc exp show, cut down)
#   make readme  rewrite README.md's generated numbers (results, timings, bench) from reports/
#   make open-questions   the α sweep, multi-class GAD and GAD against SmoothGrad, as DVC experiments
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND ?= Agg

# JupyterLab refuses to start as root (containers) unless told it may.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root) --MultiKernelManager.default_kernel_name=gadlib

.PHONY: setup data repro test unit lab shell compare readme bench open-questions lint clean-venv

setup: $(STAMP)

# Re-running a command does not reinstall: the stamp is newer than the files it was made from.
$(STAMP): requirements.lock pyproject.toml
	@echo "== creating $(VENV) with $(PYTHON) and installing the pinned stack (a few minutes, once)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-deps -r requirements.lock  # the lock is complete (tests/test_packaging.py)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

data: $(STAMP)
	$(BIN)/python -m tools.fetch

repro: data
	$(BIN)/dvc repro
	$(BIN)/python -m tools.timings

test: data
	$(BIN)/python -m pytest -q

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not pipeline"

# The notebooks name the kernel "gadlib"; it runs .venv's python, whatever python is on PATH.
lab: $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name gadlib --display-name "Python (gadlib)" >/dev/null
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/

shell: $(STAMP)
	@echo "== a shell with $(VENV) active: dvc, python and jupyter are the project's (exit to leave)"
	@bash --rcfile <(printf '%s\n' '[ -f ~/.bashrc ] && . ~/.bashrc' '. $(BIN)/activate') -i

# COMPARE_ARGS: e.g. "--method Saliency" or "-- -A" (options of dvc exp show after --)
compare: $(STAMP)
	$(BIN)/python -m tools.compare $(COMPARE_ARGS)

readme: $(STAMP)
	$(BIN)/python -m tools.readme

bench: $(STAMP)
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

open-questions: data
	$(BIN)/python -m tools.open_questions run

lint: $(STAMP)
	$(BIN)/ruff format --check gadlib tests bench tools
	$(BIN)/ruff check gadlib tests bench tools

clean-venv:
	rm -rf $(VENV)
