# terafleet: `make test` is the whole test suite (what .ci/run calls); `make demo` starts the demo cluster.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: test venv images lint unit integration molecule bench demo demo-down collection clean

## test: lint, unit tests, the worker/stand-in integration tests and every Molecule scenario, each timed.
test: venv images
	@bin/stage lint $(MAKE) --no-print-directory lint
	@bin/stage unit $(MAKE) --no-print-directory unit
	@bin/stage collection $(MAKE) --no-print-directory collection
	@bin/stage integration $(MAKE) --no-print-directory integration
	@for s in $(SCENARIOS); do bin/stage "molecule $$s" $(BIN)/molecule test -s $$s; done

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt worker/pyproject.toml
	@bin/stage venv bash -c '$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt'
	@touch $@

images:
	@bin/stage images bin/build-images

lint: venv
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production

unit: venv
	$(BIN)/pytest tests/unit

## integration: real RabbitMQ, Redis, Celery workers and TeraChem stand-ins in containers.
integration: venv images
	$(BIN)/pytest -v tests/integration

## bench: every benchmark figure in one table, also written to bench/results.md.
bench: venv images
	$(BIN)/python bench/deployment.py

molecule: venv images
	@for s in $(SCENARIOS); do bin/stage "molecule $$s" $(BIN)/molecule test -s $$s; done

collection: venv
	$(BIN)/ansible-galaxy collection build --force --output-path build/

## demo: a local cluster (head + 2 GPU nodes with stand-in GPUs), real calculations, the status table.
demo:
	@bin/demo up

## demo-down: remove every container, network and volume of the demo.
demo-down:
	@bin/demo down

clean:
	rm -rf $(VENV) build .cache
