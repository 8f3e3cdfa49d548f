# segkit Makefile: `make demo` runs the whole pipeline on the built-in phantom challenge,
# `make test` runs the test suite. Both install what they need into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SEGKIT := $(VENV)/bin/segkit
WORK ?= segkit_work

# Torch build: the CPU build where no NVIDIA GPU is present, the default (CUDA) wheel otherwise.
# Override with e.g. `make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_SPEC ?= torch==2.13.0
ifeq ($(HAS_NVIDIA),1)
TORCH_INDEX ?=
else
TORCH_INDEX ?= $(shell test -e /opt/wheels && ls /opt/wheels | grep -q '^torch-.*+cpu' || echo https://download.pytorch.org/whl/cpu)
endif
TORCH_INDEX_ARG := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)

STAMP := $(VENV)/.segkit-installed

.PHONY: install test lint demo clean help

help:
	@echo "make demo     run the pipeline end to end on the synthetic phantom challenge"
	@echo "make test     run the test suite (installs into $(VENV) first)"
	@echo "make lint     ruff"
	@echo "make install  create $(VENV) and install segkit with its test extras"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_INDEX_ARG) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check toolkit challenges tests bench

demo: $(STAMP)
	$(SEGKIT) demo --work $(WORK)

clean:
	rm -rf $(VENV) $(WORK) build *.egg-info
