# One entry point for a fresh machine: each target creates or reuses the virtual environment.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The local wheels of the development machines; override for another platform, e.g.
#   make test TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
LAB ?= lab

.PHONY: setup run test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed  ## create or reuse the virtual environment

run: setup  ## the main job: sweep the five denoisers on the embedded MNIST subset, evaluate them, print the leaderboard
	$(PY) -m jobs.pipeline --preset quick --lab $(LAB)

test: setup  ## the whole test suite (what CI runs), on 2 workers; the tests that share a costly fixture run on one (tests/conftest.py)
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: setup  ## the fast tier: everything not marked slow (no Ray, moto, Serve, browser or subprocess), a few minutes
	$(PY) -m pytest -m "not slow"

bench: setup  ## the README's CPU benchmark tables: denoisers against diffusers, then FD against the pytorch-fid formula
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/bench_denoisers.py
	$(PY) bench/bench_frechet.py

clean:
	rm -rf $(VENV) .pytest_cache
