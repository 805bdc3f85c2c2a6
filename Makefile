# The two commands a newcomer needs: `make run` and `make test`.
# Python 3.11 when there is one, else the system's python3.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: run test test-fast fuzz lint setup setup-dev clean bench bench-pages bench-report bench-tracing bench-gate bench-faults bench-load

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev]"
	touch $@

# nnsight + SAELens for the peer of `make bench` (bench/peer.py); never a runtime dependency.
$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[bench]"
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

## make run: install, migrate, create roles and a first admin, then serve web + worker + beat
run: setup
	$(PY) manage.py migrate --no-input
	$(PY) manage.py ensure_admin
	$(PY) manage.py register_sae --shipped
	$(PY) manage.py prepare_model
	$(PY) manage.py init_signing_key --if-missing
	$(PY) -m scopeweb.serve

## make test: install the dev extras and run the whole suite (PYTEST_ARGS to narrow it)
test: setup-dev
	$(PY) -m pytest $(PYTEST_ARGS)

## make test-fast: the tier that runs without the real model (tests marked `model` left out);
## a test that reaches for the model without the mark fails here and says so
test-fast: setup-dev
	SCOPEWEB_TEST_TIER=fast $(PY) -m pytest -m "not model" $(PYTEST_ARGS)

## make fuzz: over 10,000 generated inputs (prompt files, annotation imports, API bodies,
## ingestion payloads) through the real views; ends with the inputs tried per surface, the
## server errors and the partial writes (tests/fuzz; the suite runs them with fewer inputs)
fuzz: setup-dev
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/fuzz -q -p no:randomly --hypothesis-show-statistics $(PYTEST_ARGS)

lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) var/test* .pytest_cache .mypy_cache .ruff_cache

## make bench: the engine benchmark (tokens/s against a naive pipeline, MFU, agreement, bytes/token)
bench: $(VENV)/.installed-bench
	$(PY) bench/engine.py $(BENCH_ARGS)

## make bench-pages: seed a SYNTHETIC PostgreSQL database (100k traces, 10M index rows) and
## measure the trace list, trace view and feature page under 20 concurrent reviewers
BENCH_DB ?= postgres://postgres@127.0.0.1:5432/scopeweb_bench
bench-pages: setup
	createdb -h 127.0.0.1 -U postgres scopeweb_bench 2>/dev/null || true
	DATABASE_URL=$(BENCH_DB) $(PY) bench/seed_synthetic.py --reset
	DATABASE_URL=$(BENCH_DB) $(PY) bench/pages.py --seconds 60

## make bench-tracing: the latency and CPU the tracer adds to a Gemma 3 request on the staging
## server, tracing off against sample rates 0, 1 %, 5 % and 100 % (targets at 5 %: p50 +30 ms,
## p90 +200 ms)
bench-tracing: setup
	$(PY) bench/tracing.py $(BENCH_ARGS)

## make bench-report: time to generate and sign the report of a case with 20 pieces of evidence
## (a real run of the shipped SAE in a throwaway SQLite database; target at most 10 s)
bench-report: setup
	$(PY) bench/report.py $(BENCH_ARGS)

## make bench-gate: a 50-prompt smoke gate end to end (scopeweb-gate against make run's server
## and worker, 32 new tokens per prompt, one SAE), cold and with its baseline reused
## (target at most 10 minutes on a 2-core CPU machine)
bench-gate: setup
	$(PY) bench/gate.py $(BENCH_ARGS)

## make bench-faults: real runs of Gemma 3 270M (12 prompts, 16 new tokens, 6 chunks) on the
## bench's own PostgreSQL (port 5440) and Redis (port 6390) with a real worker, each hit mid-run
## by one fault (PostgreSQL restart, Redis restart, pool process SIGKILL, worker SIGKILL with
## redelivery), checked against a clean run: job state, traces missing or doubled, hashes
## (about 6 minutes on a 2-core CPU machine)
bench-faults: setup
	$(PY) bench/faults.py $(BENCH_ARGS)

## make bench-load: seed the SYNTHETIC database scopeweb_bench_load, then 20 reviewers browse it
## (1-3 s think time) for 10 minutes while ingestion posts 10 traces/s (BENCH_ARGS=--seconds N)
BENCH_LOAD_DB ?= postgres://postgres@127.0.0.1:5432/scopeweb_bench_load
BENCH_LOAD_ENV = DATABASE_URL=$(BENCH_LOAD_DB) SCOPEWEB_DATA_DIR=$(CURDIR)/var/bench-load-data
bench-load: setup
	createdb -h 127.0.0.1 -U postgres scopeweb_bench_load 2>/dev/null || true
	$(BENCH_LOAD_ENV) $(PY) bench/seed_synthetic.py --reset
	$(BENCH_LOAD_ENV) $(PY) bench/load.py $(BENCH_ARGS)
