# The two commands of the README:
#   make demo   install if needed, then run the whole workflow on the embedded demo (CPU)
#   make test   install if needed, then the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# The workflow's rules call `python -m boxcaseg.cli`: put the environment first on PATH.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo lint format test test-fast report clean-demo

install:
	bash scripts/install.sh

demo: install
	$(VENV)/bin/snakemake --cores all
	$(VENV)/bin/snakemake --report results/demo/report.html
	@echo
	@echo "Report:        results/demo/report.html"
	@echo "Final metrics: results/demo/summary/results.md"
	@cat results/demo/summary/results.md

# Lint and format check (seconds): ruff for Python, snakefmt for the Snakefile and rules/.
# `make format` rewrites the files instead.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakefmt --check Snakefile rules/

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/snakefmt Snakefile rules/

# The lint check first (the fast lane: it fails in seconds), then all tests, the slow ones
# (real training, whole workflow runs) included.
test: lint
	$(PY) -m pytest -ra

# Unit tests only (a few minutes on 2 cores).
test-fast: install
	$(PY) -m pytest -ra -m "not slow"

clean-demo:
	rm -rf results/demo resources/demo .snakemake
