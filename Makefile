# Everything a fresh machine needs: `make search` and `make test` build .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch that lies on this machine's disk (fast); any torch>=2.1 works.
TORCH ?= torch==2.13.0

.PHONY: venv test test-all search bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" || $(BIN)/python -m pip install -q torch
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

# pyproject.toml's addopts deselect tests marked slow (multi-node Ray, end-to-end searches on
# Ray); test-all selects every test, slow or not.
test: venv
	$(BIN)/python -m pytest -q

test-all: venv
	$(BIN)/python -m pytest -q -m "slow or not slow"

search: venv
	$(BIN)/evolve search --config configs/default.toml --overwrite

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
