# kuik: the only entry points a user needs. `make test` is what CI runs.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_WORKERS ?= 2
export UV_FROZEN := 1

.PHONY: install test lint pytest bench help

help:
	@echo "make install   uv, the locked Python environment, and the Debian packages tests need"
	@echo "make test      install, install-docker, lint, then the whole test suite (what CI runs)"
	@echo "make install-docker  Debian's docker.io, mmdebstrap, docker-compose (image and compose tests; large, so separate)"
	@echo "make lint      ruff check, ruff format --check, mypy, lint-imports (kuikcore's layers)"
	@echo "make bench     benchmarks in bench/ (results: docs/benchmarks.md)"
	@echo "make crds      regenerate the CRDs in charts/kube-image-keeper/crds/ from kuikcore.api.models"
	@echo "make docs      regenerate docs/crds.md (the reference of the five kinds) from the models and examples/resources/"
	@echo "make test-cluster  the cluster contract suite against \$$KUBECONFIG (a throwaway kind/k3d cluster)"
	@echo "make demo      the whole system on this machine: mirror an image, kill its registry, see the reroute"
	@echo "make dev       the same stack left running (fixed ports, examples/cluster/) until Ctrl-C"

install:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --all-packages --frozen --compile-bytecode
	$(UV) run python -m compileall -q -j 0 libs/kuikcore/src libs/kuik-testing/src services/webhook/src services/replicator/src services/monitor/src
	@scripts/install-system-packages.sh

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports --no-cache

pytest:
	$(UV) run pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: install install-docker lint pytest

bench: install
	@scripts/install-system-packages.sh --bench
	$(UV) run python -m bench

.PHONY: test-cluster
test-cluster: install  ## the cluster contract suite against $KUBECONFIG: a throwaway kind/k3d cluster with kuik's CRDs
	@test -n "$$KUBECONFIG" || { echo "make test-cluster: set KUBECONFIG to a throwaway cluster (kind, k3d) with kuik's CRDs applied"; exit 2; }
	KUIK_TEST_KUBECONFIG="$$KUBECONFIG" $(UV) run pytest -p no:xdist tests/cluster/test_contract.py

.PHONY: crds
crds:  ## regenerate the CRDs from kuikcore.api.models (tests fail when the committed ones are stale)
	$(UV) run python -m kuikcore.api.crd charts/kube-image-keeper/crds

.PHONY: docs
docs:  ## regenerate docs/crds.md from kuikcore.api.models and examples/resources/ (tests fail when it is stale)
	$(UV) run python -m kuikcore.api.docs docs/crds.md

.PHONY: install-docker
install-docker:  ## dockerd, mmdebstrap, docker-compose for the image and compose tests (large: only `make test` pulls them in)
	@scripts/install-system-packages.sh --docker

.PHONY: demo dev
demo: install  ## the whole system on this machine, no cluster: mirror an image, kill its registry, see the reroute
	$(UV) run python -m kuik_testing.demo

dev: install  ## the demo's stack on fixed ports over examples/cluster/, in the foreground until Ctrl-C
	$(UV) run python -m kuik_testing.demo dev
