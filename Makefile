# kijun — the two README commands are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv/bin
export CONTAINERS_CONF := $(CURDIR)/.kijun/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: help setup demo test test-fast lint lab-up lab-status lab-down

help:
	@echo "make demo   set up, bring the built-in lab up, apply the baseline, audit it"
	@echo "make test   set up, then run every test (unit, catalog, lab)"
	@echo "make lint   ruff, mypy, ansible-lint (production profile), catalog check"
	@echo "make lab-up | lab-status | lab-down"

setup:
	@bash src/kijun/data/bootstrap.sh

demo: setup
	$(VENV)/kijun lab up
	$(VENV)/kijun lab status
	$(VENV)/kijun apply
	$(VENV)/kijun audit

# The molecule scenarios run in the background beside the other tests (tests/molecule_runs.py).
test: setup
	$(VENV)/pytest

test-fast: setup
	$(VENV)/pytest -m "not lab"

lint: setup
	$(VENV)/ruff check src tests audits
	$(VENV)/ruff format --check src tests audits
	$(VENV)/mypy
	$(VENV)/ansible-lint --profile production playbooks roles
	$(VENV)/kijun catalog check

lab-up: setup
	$(VENV)/kijun lab up
lab-status:
	$(VENV)/kijun lab status
lab-down:
	$(VENV)/kijun lab down
