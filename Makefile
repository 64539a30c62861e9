# terafleet: `make test` is the whole test suite (what .ci/run calls); `make demo` starts the demo cluster.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# molecule/default only answers Molecule's look-up of a default scenario; it runs nothing.
SCENARIOS ?= $(filter-out default,$(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))))
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: test venv images lint sanity unit integration molecule bench demo demo-down collection clean

## test: what `make demo` installs and starts (bin/prerequisites), then lint, unit tests, the collection build,
## the integration tests and every Molecule scenario, each timed; a dockerd it started is stopped at the end.
# One shell, for the trap; TEST_MAKE, not $(MAKE), so that `make -n test` prints the recipe instead of running it.
TEST_MAKE = $(MAKE) --no-print-directory
test:
	@pidfile=$$(mktemp /tmp/terafleet-test-dockerd.XXXXXX); \
	trap 'bin/prerequisites --stop "$$pidfile"' EXIT; \
	bin/stage prerequisites bin/prerequisites "$$pidfile"; \
	$(TEST_MAKE) venv images; \
	bin/stage lint $(TEST_MAKE) lint; \
	bin/stage unit $(TEST_MAKE) unit; \
	bin/stage collection $(TEST_MAKE) collection; \
	bin/stage integration $(TEST_MAKE) integration; \
	for s in $(SCENARIOS); do bin/stage "molecule $$s" $(BIN)/molecule test -s $$s; done

# The sanity tests `make sanity` runs (ansible-test's names). Left out: changelog (no changelogs/ here),
# pslint (no PowerShell) and shellcheck (needs the shellcheck program).
SANITY_TESTS := action-plugin-docs ansible-doc compile empty-init ignores import line-endings no-assert \
	no-get-exception no-illegal-filenames no-smart-quotes pep8 pylint replace-urlopen runtime-metadata shebang \
	symlinks use-argspec-type-path use-compat-six validate-modules yamllint
SANITY_WHEELS := $(VENV)/sanity-wheels
SANITY_ROOT := build/sanity/ansible_collections/terafleet/cluster
VERSION = $(shell sed -n 's/^version: *//p' galaxy.yml)

venv: $(VENV)/.installed $(SANITY_WHEELS)/.downloaded

$(VENV)/.installed: requirements-dev.txt worker/pyproject.toml
	@bin/stage venv bash -c '$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt'
	@touch $@

# The wheels ansible-test's sanity tests install (ansible-core's pins, see tests/sanity/offline.py).
$(SANITY_WHEELS)/.downloaded: $(VENV)/.installed tests/sanity/offline.py
	$(BIN)/python tests/sanity/offline.py download $(SANITY_WHEELS) $(SANITY_TESTS)
	@touch $@

images:
	@bin/stage images bin/build-images

lint: venv
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ruff check .
	@$(MAKE) --no-print-directory sanity

## sanity: ansible-test's sanity tests on the collection as built and installed, without network: their
## packages come from the wheels `make venv` downloaded, pip's bootstrap from tests/sanity (offline.py).
# ansible-test lists a collection's files with git when it lies in a git work tree, and build/ is ignored in
# this one: the installed collection gets a repository of its own, and the ignore file the tarball leaves out.
sanity: venv collection
	rm -rf build/sanity
	$(BIN)/ansible-galaxy collection install --offline --force -p build/sanity build/terafleet-cluster-$(VERSION).tar.gz
	git init --quiet $(SANITY_ROOT)
	mkdir -p $(SANITY_ROOT)/tests/sanity
	cp tests/sanity/ignore-*.txt $(SANITY_ROOT)/tests/sanity/
	$(BIN)/python tests/sanity/offline.py home build/home $(SANITY_WHEELS)
	cd $(SANITY_ROOT) && HOME=$(CURDIR)/build/home \
		$(CURDIR)/$(BIN)/ansible-test sanity --color no --python 3.11 $(addprefix --test ,$(SANITY_TESTS))

unit: venv
	$(BIN)/pytest tests/unit

## integration: real RabbitMQ, Redis, Celery workers and TeraChem stand-ins in containers.
integration: venv images
	$(BIN)/pytest -v --durations=10 tests/integration

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
