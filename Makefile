# Quick start:  make demo   (set up + main job on the embedded model, results in out/)
#               make test   (set up + lint, type check, test suite with coverage)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := dataset-fashion-mnist chromium
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup apt demo test lint typecheck clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $@

apt:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $(APT_PACKAGES); \
		else sudo apt-get update -qq && sudo apt-get install -y -qq $(APT_PACKAGES); fi; \
	fi

setup: apt $(VENV)/.installed

demo: setup
	$(VENV)/bin/megen reproduce --preset demo --out out/report --workers 2
	$(VENV)/bin/megen demo --out out

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

typecheck: setup
	$(VENV)/bin/mypy src/megen

test: setup lint typecheck
	$(VENV)/bin/pytest -q -m "not slow" --cov=megen --cov-report=term:skip-covered

clean:
	rm -rf $(VENV) out report .pytest_cache .mypy_cache .ruff_cache
