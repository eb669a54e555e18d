# kdns: `make demo` serves the demo cluster on 127.0.0.1:5353; `make test` runs the whole suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kdns serve --demo --listen 127.0.0.1:5353 --external-zone example.org --no-forward \
		--metrics-listen 127.0.0.1:9153 --health-listen 127.0.0.1:8080 --ready-listen 127.0.0.1:8181

lint: $(STAMP)
	$(BIN)/ruff check kdns tests benchmarks
	$(BIN)/ruff format --check kdns tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

# kdns (metrics on/off, killer) next to NSD on mixes (a)-(d); installs dnsperf and nsd with
# apt-get when root. BENCH_ARGS=--quick for a smoke run; results in benchmarks/results/latest.json
# and, drawn with matplotlib (the `bench` extra, installed here only), latest.png.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Then memory per Service / endpoint / Pod and sync time (benchmarks/cluster_scale.py --quick,
# under a minute: import, demo, 1,050 Services), merged into benchmarks/results/cluster_scale.json,
# which README and docs/deploying.md cite (tests/test_docs.py names any figure they then lack).
# The large cluster (160,000 objects, ~10 minutes) is a flag: make bench SCALE_ARGS="--only large".
SCALE_ARGS ?= --quick
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/qps.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/cluster_scale.py $(SCALE_ARGS) --json benchmarks/results/cluster_scale.json --merge

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
