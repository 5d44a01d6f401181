# pg_runbook: the one place that knows how to build, test, demo and benchmark.
# Every target installs what it needs first (scripts/setup.sh is quick when all is there).

# Local, git-ignored overrides (for example another PG_CONFIG) may live in .run/local.mk.
-include .run/local.mk
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
export PG_CONFIG
PGDATA_TEST := $(CURDIR)/.run/pgrx-test

.PHONY: help setup build install test test-core test-pgrx test-regress test-integration \
        test-security test-bench-smoke test-static demo demo-stop bench clean

help:
	@echo "make demo        run a demo on a throwaway cluster (make demo-stop to stop it)"
	@echo "make test        run every test layer"
	@echo "make bench       run the benchmarks and rewrite BENCHMARKS.md (QUICK=1 for a smoke run)"

setup:
	@scripts/setup.sh

build: setup
	cargo build

# Installs the extension (without the in-crate test functions) into the PostgreSQL of $(PG_CONFIG).
install: setup
	cargo pgrx install --pg-config $(PG_CONFIG) >/dev/null

test: test-static setup test-core test-pgrx install test-regress test-integration test-security test-bench-smoke
	@echo "all tests passed"

# Static checks of the source, in seconds: every unsafe says why it is sound (SAFETY:), the
# module graph has no cycle, and docs/architecture.md draws the graph as it is.
test-static:
	python3 scripts/check_unsafe.py --self-test
	python3 scripts/check_unsafe.py
	python3 scripts/module_graph.py >/dev/null
	python3 scripts/module_graph.py --markdown | diff -u docs/architecture.md - \
	  || { echo "docs/architecture.md is stale: scripts/module_graph.py --markdown > docs/architecture.md"; exit 1; }

# Layer 0: pure logic, no server.
test-core:
	cargo test -p runbook-core --quiet

# Layer 1: #[pg_test] functions inside the crate, on pgrx's own throwaway cluster (preloaded).
test-pgrx: setup
	rm -rf $(PGDATA_TEST)
	bash -c '. scripts/lib.sh && make_reachable $(PGDATA_TEST)'
	# `cargo pgrx test --runas` copies its build with `sudo cp`, which overwrites the installed
	# library in place: every running server that loaded it then executes changed code and
	# crashes. Removed first, the old file lives on for them and the copy is a new file.
	rm -f "$$($(PG_CONFIG) --pkglibdir)/pg_runbook.so"
	cargo pgrx test pg15 --runas postgres --pgdata $(PGDATA_TEST)/data

# Layer 2: SQL regression tests of every function's user-visible output.
test-regress: install
	scripts/regress.sh

# Layer 3: several sessions, preloading, restarts, pg_cron.
test-integration: install
	scripts/integration.sh

# Layer 4: pgspot over the install script, sqlsmith against a live database (the attacker suite
# itself is an integration test).
test-security: install
	scripts/security.sh

# The benchmarks at tiny sizes, one run: keeps them from rotting. No timing is asserted.
test-bench-smoke: install
	QUICK=1 scripts/bench.sh

# Release build, full sizes, rewrites BENCHMARKS.md. QUICK=1 for the smoke run.
bench: setup
	QUICK=$(QUICK) scripts/bench.sh

# The demo cluster is stopped before the library is reinstalled: overwriting a loaded library
# under a running server can crash its processes. It starts again with the new one.
demo: setup
	@scripts/demo.sh stop >/dev/null
	@$(MAKE) --no-print-directory install
	scripts/demo.sh

demo-stop:
	scripts/demo.sh stop

clean:
	scripts/demo.sh stop || true
	rm -rf .run target
