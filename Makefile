# One entry point for developers and CI. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# tested versions of everything '.[dev]' installs (see its header)
CONSTRAINTS := requirements/dev-constraints.txt
CODE := src tests benchmarks scripts docs/hooks setup.py $(wildcard examples)

.PHONY: install demo test check lint typecheck pytest pytest-oldest docs bench services services-stop system-deps clean

# the extras installed: all of them and the dev tools (`test`: only what the tests need)
EXTRAS ?= dev
# setup.py compiles the optional C base of the SQL Row (pure Python without a compiler).
# --no-compile: no bytecode for every module of every package at install; Python compiles a
# module when it is first imported, and the tests import a fraction of them
$(STAMP): pyproject.toml setup.py src/asyncify_kit/sql/_rowcore.c $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e '.[$(EXTRAS)]' -c $(CONSTRAINTS)
	touch $(STAMP)

install: $(STAMP)

## The event-loop blocking experiment on embedded defaults (no servers).
demo: install
	$(VENV)/bin/asyncify-kit demo

## Servers the tests use: MariaDB comes from Debian (PostgreSQL is on the image); mkfs.ext4
## (e2fsprogs, on every Debian) for the tests of benchmarks/fs_matrix.py.
system-deps:
	@command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1 || { \
		echo "installing mariadb-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null; }
	@command -v mkfs.ext4 >/dev/null 2>&1 || { \
		echo "installing e2fsprogs"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq e2fsprogs >/dev/null; }

## Start the services, run every check, stop the services (also on failure or Ctrl-C).
test: install system-deps
	$(PY) scripts/services.py run -- $(MAKE) --no-print-directory check

check: lint typecheck pytest pytest-oldest docs

lint: install
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)

# mypy and pyright at once (each about 30 s from a fresh clone); fails if either fails
typecheck: install
	$(VENV)/bin/mypy & mypy=$$!; $(VENV)/bin/pyright; pyright=$$?; wait $$mypy && exit $$pyright

# Worker processes of pytest-xdist: most tests wait on servers, sockets and timeouts, so three
# on two cores took the suite from 812 s to 407-420 s here, two 532 s (`TEST_WORKERS=0`: one).
# Four since 2026-12-02, when the suite (5,729 tests) took 521-576 s with three in two
# fresh-clone runs, and 521 s with four in the next one (the machine's pace varies by the hour).
TEST_WORKERS ?= 4
# The Python 3.10 run is mostly the engine's tests, which keep the CPU busy: 130-131 s with
# three workers, 155 s with four (one run each)
OLDEST_WORKERS ?= 3
# the slowest tests are listed at the end, so a run's log shows where its time went
pytest: install
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist worksteal --durations=25

# The oldest Python supported (3.10) runs the tests most tied to the version, in a venv of its
# own: the offload engine (tracebacks), detection, scanning, connect and query timeouts
# (asyncio's TimeoutError is the builtin one only from 3.11), sqlite3, the S3 clients' errors.
# Audits of the whole suite on 3.10 found bugs that 3.11 did not show. Taken from PATH or
# pyenv; a machine without it skips this step, except in CI.
OLDEST_PYTHON ?= $(shell for p in python3.10 $(HOME)/.pyenv/versions/3.10*/bin/python3.10; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo "$$p"; break; }; done)
OLDEST_VENV := .venv-py310
OLDEST_TESTS := tests/core tests/detect tests/scan tests/sql/test_connect.py \
	tests/sql/test_sqlite.py tests/sql/test_sqlite_uri.py tests/storage/test_s3.py \
	tests/test_engine_lifecycle.py tests/test_aws_loop.py tests/test_fastapi.py
pytest-oldest:
	@python="$(OLDEST_PYTHON)"; if [ -z "$$python" ]; then \
		echo "pytest-oldest: no Python 3.10 here (set OLDEST_PYTHON=...): skipped"; \
		[ "$${CI:-}" != true ] || { echo "pytest-oldest: CI needs it"; exit 1; }; \
	else \
		$(MAKE) --no-print-directory install PYTHON="$$python" VENV=$(OLDEST_VENV) EXTRAS=test && \
		$(OLDEST_VENV)/bin/pytest -n $(OLDEST_WORKERS) --dist worksteal $(OLDEST_TESTS); \
	fi

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir .site

## Ratio benchmarks against the peers, services included; writes benchmarks/results/.
bench: install system-deps
	$(PY) scripts/services.py run -- $(PY) -m benchmarks

## Start the services in the background for interactive work; `source .services/env`.
services: install system-deps
	$(PY) scripts/services.py start

services-stop:
	$(PY) scripts/services.py stop

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .services .site .mypy_cache .ruff_cache .pytest_cache build
	find src -name '*.so' -delete
