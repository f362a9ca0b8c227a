# Everything a fresh machine with only Python needs lives here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export AIRFLOW_HOME ?= $(CURDIR)/airflow_home
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__UNIT_TEST_MODE ?= False

.PHONY: help install services browser airflow-db demo test lint typecheck check bench clean

help:
	@echo "make demo   - install, set up Airflow + the embedded lakehouse, build and show a demo table"
	@echo "make test   - install what tests need, start local services if down, ruff + mypy, run the whole suite"
	@echo "make check  - ruff + mypy"
	@echo "make bench  - run the benchmarks (not part of make test)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# PostgreSQL and Redis are expected on 127.0.0.1; start them when they are installed but down.
services:
	@if command -v pg_isready >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then \
	  echo "starting PostgreSQL"; pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; \
	  for i in $$(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done; fi
	@if command -v redis-server >/dev/null && ! (command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1); then \
	  echo "starting Redis"; redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true; fi

airflow-db: install
	mkdir -p $(AIRFLOW_HOME)
	$(VENV)/bin/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -50 $(AIRFLOW_HOME)/db-migrate.log; exit 1)

# Airflow's task logs stay at WARNING so the summary is readable; DEMO_LOG_LEVEL=INFO shows them.
DEMO_LOG_LEVEL ?= WARNING
demo: airflow-db
	AIRFLOW__LOGGING__LOGGING_LEVEL=$(DEMO_LOG_LEVEL) $(PY) -m airflow_provider_amoro.demo

# Headless Chromium and its driver for the Lakehouse UI's end-to-end test (Debian packages).
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing chromium and chromium-driver"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; fi

test: install services browser lint typecheck
	$(PY) -m pytest

lint:
	$(VENV)/bin/ruff check airflow_provider_amoro tests dags benchmarks
	$(VENV)/bin/ruff format --check airflow_provider_amoro tests dags benchmarks

# The tests' shared helpers (catalogs, schemas and row builders, table views) are typed too.
TYPED_TEST_HELPERS = tests/conftest.py tests/catalogs.py tests/builders.py tests/s3_server.py \
  tests/file_checks.py tests/maintenance/conftest.py tests/maintenance/helpers.py \
  tests/optimizing/_tables.py tests/optimizing/commit_support.py tests/optimizing/_synthetic.py \
  tests/integration/conftest.py tests/integration/tables.py

typecheck:
	$(VENV)/bin/mypy airflow_provider_amoro
	MYPYPATH=tests $(VENV)/bin/mypy $(TYPED_TEST_HELPERS)

check: install lint typecheck

bench: install
	$(PIP) install -q -e ".[dev,bench]"
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME) .pytest_cache .mypy_cache .ruff_cache
