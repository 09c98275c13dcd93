# Two commands set up a fresh machine:  `make dev` (run it) and `make test` (test it).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# providers/example is left out on purpose: its test installs it the way a vendor package
# is installed (pip install --target DIR) and loads it from there with --provider-path.
PROVIDERS := $(filter-out providers/example,$(patsubst %/pyproject.toml,%,$(wildcard providers/*/pyproject.toml)))

.PHONY: dev test lint unit integration install control-plane clean

$(STAMP): pyproject.toml $(wildcard providers/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' $(foreach p,$(PROVIDERS),-e $(p))
	touch $@

install: $(STAMP)

## Find or build kube-apiserver + etcd (minutes on a cold cache), before any test timeout applies.
control-plane: $(STAMP)
	$(BIN)/volcano-topology control-plane build

## Start a local kube-apiserver + etcd with the CRD installed (builds them on first use).
dev: control-plane
	$(BIN)/volcano-topology dev

## Lint, type-check and run every test (integration tests start their own control plane).
test: lint control-plane
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: control-plane
	$(BIN)/python -m pytest tests/integration

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
