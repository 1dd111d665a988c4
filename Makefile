# A newcomer needs two commands: `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo
# torch first, pinned: any other request pulls a multi-GB CUDA build.
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test lint clean

$(BIN)/synaptech-bids: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/synaptech-bids

demo: install
	rm -rf $(DEMO)
	$(BIN)/synaptech-bids-simulate $(DEMO)/bids --subjects 3 --runs 2 --duration 60 --seed 0
	$(BIN)/synaptech-bids $(DEMO)/bids $(DEMO)/derivatives participant --participant-label 01 02 03
	$(BIN)/synaptech-bids $(DEMO)/bids $(DEMO)/derivatives group
	@echo "Derivatives: $(DEMO)/derivatives   Reports: $(DEMO)/derivatives/sub-*.html $(DEMO)/derivatives/group.html"

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache

# The container image synaptech/bids:VERSION and :latest (docs/containers.md):
# `docker build` where a Docker engine answers, else Podman, which
# docker/prepare_podman.sh sets up (runc, cgroupfs, and the base image made
# with debootstrap when no image registry answers). The size is printed.
# ENGINE=docker|podman forces one; IMAGE_BUILD_OPTS=--no-cache builds cold.
ENGINE ?=
IMAGE ?= synaptech/bids
IMAGE_BUILD_OPTS ?=

.PHONY: image test-container

image:
	ENGINE=$(ENGINE) IMAGE=$(IMAGE) bash docker/build_image.sh $(IMAGE_BUILD_OPTS)

# Builds the image (layer cache) and runs it as users do: tests/container/.
test-container: install
	$(BIN)/python -m pytest -q tests/container

# The participant level as a SLURM array and the dependent group job, on a
# real single-node SLURM started by the tests (tests/scheduler/, as root):
# docker/prepare_slurm.sh installs Debian's slurm-wlm and munge when missing.
.PHONY: test-scheduler

test-scheduler: install
	bash docker/prepare_slurm.sh
	$(BIN)/python -m pytest -q tests/scheduler
