# pgdog-ev: `make run` starts a demo PostgreSQL and the proxy; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_BINDIR := $(firstword $(shell ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TEST_WORKERS ?= 2

.PHONY: setup run test lint unit integration postgres clean sim toxiproxy chaos fuzz native jdbc

setup: native postgres toxiproxy jdbc

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,native]'
	touch $(STAMP)

# The compiled parts, rebuilt when missing or older than their sources; without a C compiler
# the pure-Python twins run. The scanner's C helper (cffi), then the hot path's modules (mypyc,
# about a minute; see pgdog_ev/native.py).
native: $(STAMP)
	@ls pgdog_ev/wire/_passrun_c*.so >/dev/null 2>&1 && [ pgdog_ev/wire/_passrun_c*.so -nt pgdog_ev/wire/_passrun_build.py ] || \
	  $(PY) -m pgdog_ev.wire._passrun_build
	@$(PY) -m pgdog_ev.native_build --if-stale

# PostgreSQL server binaries, psql, pgbench and openssl from Debian's packages when missing.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null || \
	    ! ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1; then \
	  echo "installing PostgreSQL from Debian packages"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q postgresql postgresql-contrib postgresql-client; \
	fi
	@# The TLS tests make their own CA and certificates with openssl.
	@if ! command -v openssl >/dev/null; then \
	  echo "installing openssl from Debian packages"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q openssl; \
	fi

# The chaos tests' toxiproxy server: one already on PATH, else built from the Go module proxy.
TOXIPROXY_VERSION := v2.12.0
TOXIPROXY := $(VENV)/bin/toxiproxy-server
toxiproxy: $(STAMP)
	@if [ ! -x $(TOXIPROXY) ]; then \
	  if command -v toxiproxy-server >/dev/null; then ln -sf "$$(command -v toxiproxy-server)" $(TOXIPROXY); \
	  else \
	    echo "installing toxiproxy $(TOXIPROXY_VERSION) with go install"; \
	    GOBIN=$(CURDIR)/$(VENV)/go-bin go install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION) && \
	    mv $(VENV)/go-bin/server $(TOXIPROXY) && rmdir $(VENV)/go-bin; \
	  fi; \
	fi

# The JDBC tests' driver (tests/integration/test_jdbc.py): a JDK and PgJDBC, both from Debian's
# packages when missing.
JDBC_JAR := /usr/share/java/postgresql.jar
jdbc:
	@if ! command -v javac >/dev/null || [ ! -f $(JDBC_JAR) ]; then \
	  echo "installing a JDK and PgJDBC from Debian packages"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	    $$(command -v javac >/dev/null || echo default-jdk-headless) libpostgresql-jdbc-java; \
	fi

run: setup
	$(PY) ops/demo/demo.py --data .data

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) -q
	@# The state machines once more on their pure-Python sources, the twin of the compiled build.
	PGDOG_EV_PURE=1 $(PY) -m pytest -n $(TEST_WORKERS) -q tests/unit

unit: setup
	$(PY) -m pytest -n $(TEST_WORKERS) -q tests/unit

integration: setup
	$(PY) -m pytest -n $(TEST_WORKERS) -q tests/integration

# Every simulator scenario for many seeds (about 5 minutes on 2 cores); SEEDS=N overrides the count.
sim: native
	PYTHONHASHSEED=0 $(PY) -m pgdog_ev sim --all --jobs $(TEST_WORKERS) $(if $(SEEDS),--seeds $(SEEDS))

# Every chaos case through toxiproxy (tests/chaos); `make test` runs only the fast subset.
chaos: setup
	PGDOG_EV_CHAOS=full $(PY) -m pytest -n $(TEST_WORKERS) -q tests/chaos $(CHAOS_ARGS)

# Long fuzzing of every target under fuzz/: atheris when it installs, hypothesis otherwise.
# FUZZ_SECONDS is the time per target (default 60); FUZZ_ARGS adds options (see `python -m fuzz -h`).
fuzz: native
	@$(PY) -c 'import atheris' 2>/dev/null || $(VENV)/bin/pip install -q atheris || \
	  echo "atheris did not install: fuzzing with hypothesis"
	$(PY) -m fuzz run --seconds $(or $(FUZZ_SECONDS),60) $(FUZZ_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf .data .pytest_cache .ruff_cache .hypothesis

# Benchmarks, never part of `make test`: pgdog-ev vs PgBouncer vs PostgreSQL direct (bench/run.py).
# PgBouncer comes from Debian's packages and matplotlib from the `bench` extra when missing.
# `make bench` takes about 40 minutes on 2 cores, `make bench-quick` about 2-3; BENCH_ARGS adds options.
.PHONY: bench bench-quick bench-setup

bench-setup: setup
	@if [ ! -x /usr/sbin/pgbouncer ] && ! command -v pgbouncer >/dev/null; then \
	  echo "installing PgBouncer from Debian packages"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q pgbouncer && \
	  { $(SUDO) systemctl disable --now pgbouncer || $(SUDO) service pgbouncer stop || true; } >/dev/null 2>&1; \
	fi
	@# (The benchmark starts PgBouncers of its own; the packaged service would only hold port 6432.)
	@$(PY) -c 'import matplotlib' 2>/dev/null || $(VENV)/bin/pip install -q -e '.[bench]'

bench: bench-setup
	$(PY) -m bench --profile full $(BENCH_ARGS)

bench-quick: bench-setup
	$(PY) -m bench --profile quick $(BENCH_ARGS)
