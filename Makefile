# Two commands set up a fresh machine:  `make dev` (run it) and `make test` (test it).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# providers/example is left out on purpose: its test installs it the way a vendor package
# is installed (pip install --target DIR) and loads it from there with --provider-path.
PROVIDERS := $(filter-out providers/example,$(patsubst %/pyproject.toml,%,$(wildcard providers/*/pyproject.toml)))

.PHONY: dev test lint unit integration install control-plane clean bench bench-smoke reliability soak

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

## Issue 15's scale benchmark (< 25 min on 2 cores): writes bench/results/*.json, bench/RESULTS.md, bench/scale.png.
## BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--sizes 16384 --scenarios cold,steady --profile cold".
bench: control-plane
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

## The benchmark's quick run: 1,024 nodes, four scenarios, about a minute (no RESULTS.md rewrite).
bench-smoke: control-plane
	$(BIN)/python -m bench.scale --smoke --no-report --out test-artifacts/bench

## The reliability suite at full size (< 30 min): faults, bad input, security; figures in
## test-artifacts/reliability/figures.jsonl (docs/reliability.md). `make test` runs it at the fast size.
reliability: control-plane
	rm -f test-artifacts/reliability/figures.jsonl
	VOLCANO_TOPOLOGY_RELIABILITY=full $(BIN)/python -m pytest tests/integration/reliability -m "reliability and not soak" $(RELIABILITY_ARGS)

## The long soak alone (SOAK_MINUTES, default 30): 16,384 nodes, fabric changes, API-server restarts, failovers.
## Its figures and progress log go to test-artifacts/reliability-soak/, apart from `make reliability`'s.
SOAK_MINUTES ?= 30
soak: control-plane
	VOLCANO_TOPOLOGY_RELIABILITY=full VOLCANO_TOPOLOGY_SOAK_MINUTES=$(SOAK_MINUTES) VOLCANO_TOPOLOGY_RELIABILITY_OUT=test-artifacts/reliability-soak $(BIN)/python -m pytest tests/integration/reliability -m soak -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts

# ---- Deployment: build, image, cluster (deploy/README.md) ---------------------------------------
# Variables (override on the command line, e.g. `make image push REGISTRY=registry.example.com/infra TAG=dev`):
#   REGISTRY        where `push` sends the image                 (default ghcr.io/volcano-topology)
#   IMAGE           the image name                               (default $(REGISTRY)/volcano-topology)
#   TAG             the image tag                                (default: the version in pyproject.toml)
#   CONTAINER_TOOL  docker | podman | buildah                    (default docker)
#   IMAGE_PROVIDERS provider directories under providers/ to put in the image, e.g. "label ufm" (default none)
#   BASE_IMAGE      the Dockerfile's base (default: its own, python:3.11-slim-bookworm)
#   OVERLAY         what `deploy`/`undeploy` apply: deploy, deploy/overlays/label-provider, deploy/overlays/ufm
#   KUBECTL         kubectl with built-in kustomize (default kubectl; /usr/bin/kubectl v1.32 on this machine)
REGISTRY        ?= ghcr.io/volcano-topology
IMAGE           ?= $(REGISTRY)/volcano-topology
TAG             ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
CONTAINER_TOOL  ?= docker
IMAGE_PROVIDERS ?=
BASE_IMAGE      ?=
OVERLAY         ?= deploy
KUBECTL         ?= kubectl
# The image the manifests name; `deploy` replaces it with $(IMAGE):$(TAG).
MANIFEST_IMAGE  := ghcr.io/volcano-topology/volcano-topology
IMAGE_ARGS       = --build-arg PROVIDERS="$(IMAGE_PROVIDERS)" --build-arg VERSION=$(TAG) \
                   $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -t $(IMAGE):$(TAG)
# buildah needs no daemon; in a sandbox without one: vfs storage, chroot isolation.
BUILDAH          = buildah --storage-driver vfs
HELM             = $$($(BIN)/python -m volcano_topology.controlplane.tools)
# Without a registry (make image-local): the base image from Debian's packages, cached by buildah.
LOCAL_BASE      ?= localhost/volcano-topology-base:bookworm
# No manuals, docs or translations in the base (licence files are kept): about 70 MB less.
DEBSTRAP_SLIM    = --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
                   --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
# The TLS proxy's CA, mounted into builds only (never baked into the image): see deploy/README.md.
BUILD_CA        ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: build fmt tools helm-lint image image-local image-base image-tools image-test push deploy undeploy

## Wheels of the operator and every provider package into dist/.
build: $(STAMP)
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist . $(patsubst %,./%,$(wildcard providers/*/))

## Format the code and apply ruff's safe fixes.
fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Find or build the tools the deployment tests need (helm, from its Go module, into the cache).
tools: $(STAMP)
	$(BIN)/python -m volcano_topology.controlplane.tools
test unit integration: tools

## Lint the Helm chart and render it with its default values.
helm-lint: tools
	$(HELM) lint --strict charts/volcano-topology
	$(HELM) template volcano-topology charts/volcano-topology --namespace volcano-topology >/dev/null

## Build the image with $(CONTAINER_TOOL).
image:
ifeq ($(CONTAINER_TOOL),buildah)
	$(BUILDAH) bud --isolation chroot --layers $(IMAGE_ARGS) .
else
	$(CONTAINER_TOOL) build $(IMAGE_ARGS) .
endif

## buildah, podman and mmdebstrap from Debian's packages, when missing (needs root and apt).
image-tools:
	@command -v buildah >/dev/null && command -v podman >/dev/null && command -v mmdebstrap >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman mmdebstrap; }

## Build the base image from Debian packages (mmdebstrap), once; needs root, no registry.
image-base: image-tools
	$(BUILDAH) inspect --type image $(LOCAL_BASE) >/dev/null 2>&1 || { \
	  set -e; tmp=$$(mktemp -d); \
	  mmdebstrap --variant=apt --include=python3,python3-venv,ca-certificates $(DEBSTRAP_SLIM) bookworm $$tmp/rootfs.tar; \
	  podman --storage-driver vfs import $$tmp/rootfs.tar $(LOCAL_BASE); rm -rf $$tmp; }

## Build the image where no registry is reachable: the Debian base, then the Dockerfile with buildah.
image-local: image-base
	$(BUILDAH) bud --isolation chroot --layers -v $(BUILD_CA):$(BUILD_CA):ro \
	  $(IMAGE_ARGS) --build-arg BASE_IMAGE=$(LOCAL_BASE) .

## Build the image (and a vendor image FROM it) and run the operator inside it against a local control plane.
## Run before resolving a deployment change; not part of CI (it needs root, buildah and mmdebstrap).
image-test: control-plane tools image-tools
	VOLCANO_TOPOLOGY_IMAGE_TEST=1 $(BIN)/python -m pytest -p no:randomly -s tests/integration/test_deploy_image.py

push:
ifeq ($(CONTAINER_TOOL),buildah)
	$(BUILDAH) push $(IMAGE):$(TAG) docker://$(IMAGE):$(TAG)
else
	$(CONTAINER_TOOL) push $(IMAGE):$(TAG)
endif

## Apply $(OVERLAY) (the CRD included) with the image $(IMAGE):$(TAG), to the current kubectl context.
deploy:
	$(KUBECTL) kustomize $(OVERLAY) | sed 's#image: $(MANIFEST_IMAGE):.*#image: $(IMAGE):$(TAG)#' | $(KUBECTL) apply -f -

## Delete what `deploy` applied except the CRD (deleting it would delete every HyperNode, Volcano's too).
undeploy: $(STAMP)
	$(KUBECTL) kustomize $(OVERLAY) | $(BIN)/python -c 'import sys, yaml; \
	  print(yaml.safe_dump_all([d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] != "CustomResourceDefinition"]))' \
	  | $(KUBECTL) delete --ignore-not-found --wait=false -f -
