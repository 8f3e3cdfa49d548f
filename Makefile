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

# ---- challenge adapters (challenges/): make <challenge> RAW=/path/to/download [WORK=dir] [NAME=folder] ----
# <challenge>-convert    raw download -> $(WORK)/datasets/<NAME> (canonical dataset; skipped once it exists)
# <challenge>-train      segkit run on it (fingerprint -> plan -> preprocess -> train -> select; resumable)
# <challenge>-submission export the selected models, predict imagesTs, write the challenge's format
# <challenge>-package    grand-challenge container image of the exported bundle
# <challenge>            convert -> train -> export -> package
# ADAPTER_ARGS (e.g. "-O names.team=abc --config my.yaml") go to both convert and submission;
# submission also gets -O dataset=<the converted dataset> (chaos reads its slice order from there).
# RUN_ARGS go to segkit run, EXPORT_ARGS to segkit export; one model on all data (fold 'all'):
#   make cremi RAW=... RUN_ARGS="-f all" EXPORT_ARGS="-c 3d_fullres --folds all"
CHALLENGES := decathlon kits19 acdc lits bcv promise12 msles chaos segthor cremi folder
ADAPTER_ARGS ?=
RUN_ARGS ?=
EXPORT_ARGS ?=
IMAGE_TAG ?= latest

define CHALLENGE_RULES
$(1)_DATASET = $$(WORK)/datasets/$$(or $$(NAME),$(1))
$(1)_BUNDLE = $$(WORK)/bundles/$$(or $$(NAME),$(1))
.PHONY: $(1) $(1)-convert $(1)-train $(1)-export $(1)-submission $(1)-package
$(1): $(1)-package
$(1)-convert: $(STAMP)
	@test -n "$$(RAW)" || test -f "$$($(1)_DATASET)/dataset.json" || \
	  { echo "usage: make $(1) RAW=/path/to/download [WORK=dir] [NAME=folder]" >&2; exit 2; }
	test -f "$$($(1)_DATASET)/dataset.json" || $(SEGKIT) convert $(1) "$$(RAW)" "$$($(1)_DATASET)" $$(ADAPTER_ARGS)
$(1)-train: $(1)-convert
	$(SEGKIT) run "$$($(1)_DATASET)" --work "$$(WORK)" $$(RUN_ARGS)
$(1)-export: $(1)-train
	$(SEGKIT) export "$$($(1)_DATASET)" --work "$$(WORK)" -o "$$($(1)_BUNDLE)" $$(EXPORT_ARGS)
$(1)-submission: $(1)-export
	$(SEGKIT) predict -m "$$($(1)_BUNDLE)" -i "$$($(1)_DATASET)/imagesTs" -o "$$(WORK)/predictions/$(1)" --save-probabilities
	$(SEGKIT) submission $(1) "$$(WORK)/predictions/$(1)" "$$(WORK)/submissions/$(1)" --overwrite \
	  -O dataset="$$($(1)_DATASET)" $$(ADAPTER_ARGS)
$(1)-package: $(1)-export
	$(SEGKIT) package "$$($(1)_BUNDLE)" --challenge $(1) -t "segkit-$(1):$$(IMAGE_TAG)" -o "$$(WORK)/segkit-$(1).tar.gz"
endef
$(foreach c,$(CHALLENGES),$(eval $(call CHALLENGE_RULES,$(c))))
