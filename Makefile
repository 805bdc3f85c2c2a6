# The two commands a newcomer needs: `make run` and `make test`.
# Python 3.11 when there is one, else the system's python3.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: run test lint setup setup-dev clean bench bench-pages bench-report bench-tracing bench-gate

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
