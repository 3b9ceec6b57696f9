# Quick start: `make run` (a local network that mines and moves coins) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test run bench bench-quick clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml setup.py node/consensus/_sigbatch.c node/primitives/_formatcheck.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

run: $(STAMP)
	$(BIN)/obol-testnet run

# make bench BENCH_ARGS="--json bench.json" (or --only NAME,..., --profile DIR): see docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python scripts/bench.py --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) testnet build *.egg-info
	find node -name "*.so" -delete
