# Quick start: `make run` (a local network that mines and moves coins), `make test`, `make lint`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# make lint LINT_PATHS="node/primitives wallet": the same checks, on those paths only
LINT_PATHS ?=

.PHONY: venv test lint format run bench bench-quick clean browser hosts screenshots link-deps

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml setup.py node/consensus/_sigbatch.c node/primitives/_formatcheck.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	@# the link emulator's NetfilterQueue builds against libnetfilter-queue (make link-deps);
	@# without it the venv is still complete and the emulated-link tests skip, saying why
	if [ -f /usr/include/libnetfilter_queue/libnetfilter_queue.h ]; then \
		$(BIN)/pip install --quiet -e '.[link]'; \
	else echo "no libnetfilter-queue-dev: emulated WAN links (obol-testnet link) unavailable"; fi
	touch $(STAMP)

test: $(STAMP)
	@# the 15 slowest tests are listed: the suite must stay within 10 minutes on 2 cores
	$(BIN)/python -m pytest -q --durations=15

# Debian's chromium and chromium-driver, for the explorer's browser tests
# (tests/functional/feature_explorer.py skips, saying why, without them); needs root and apt
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "make browser: not root; the browser tests will skip"; exit 1; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

# iproute2 and iptables, for `obol-testnet up --hosts` (a network namespace per node) and its
# tests (tests/functional/feature_testnet_hosts.py skips, saying why, without them or root)
hosts:
	@if command -v ip >/dev/null && command -v iptables >/dev/null && command -v setpriv >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "make hosts: not root; the namespace tests will skip"; exit 1; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iptables util-linux

# Debian's iptables, iproute2 and libnetfilter-queue-dev, for emulated WAN links
# (scripts/linkemu.py; tests/functional/feature_linkemu.py skips, saying why, without them);
# needs root and apt.  Run it before the venv is built: the venv then gets NetfilterQueue.
link-deps:
	@if command -v iptables >/dev/null && command -v ip >/dev/null && \
		[ -f /usr/include/libnetfilter_queue/libnetfilter_queue.h ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "make link-deps: not root; the emulated-link tests will skip"; exit 1; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 iputils-ping libnetfilter-queue-dev gcc

# make screenshots: the explorer's pages as PNGs in docs/screenshots/ (taken by its browser test)
screenshots: $(STAMP) browser
	OBOL_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/functional/feature_explorer.py tests/functional/feature_dashboard.py

# ruff (lint, import order, format) and mypy, all configured in pyproject.toml; all three
# run, and lint fails if any of them failed
lint: $(STAMP)
	@status=0; \
	$(BIN)/ruff check $(or $(LINT_PATHS),.) || status=1; \
	$(BIN)/ruff format --check $(or $(LINT_PATHS),.) || status=1; \
	$(BIN)/mypy $(LINT_PATHS) || status=1; \
	exit $$status

# rewrite files the way `make lint` wants them (safe fixes and the formatter)
format: $(STAMP)
	$(BIN)/ruff check --fix $(or $(LINT_PATHS),.)
	$(BIN)/ruff format $(or $(LINT_PATHS),.)

run: $(STAMP)
	$(BIN)/obol-testnet run

# make bench BENCH_ARGS="--json bench.json" (or --only NAME,..., --profile DIR): see docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python scripts/bench.py --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) testnet build *.egg-info .mypy_cache .ruff_cache
	find node -name "*.so" -delete
