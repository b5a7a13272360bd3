# Two commands on a fresh machine: `make demo` and `make test`. Both set up what they need:
# a virtualenv in .venv (unless one is active) with the project installed.
PYTHON ?= python3
ifdef VIRTUAL_ENV
PY := $(VIRTUAL_ENV)/bin/python
else
PY := .venv/bin/python
endif
STAMP := $(dir $(PY)).runbook-installed
PYTEST_ARGS ?=

.PHONY: install demo test lint bench bench-system bench-layouts bench-deploy-cheap bench-memory bench-owner sweep-generated sweep-kill-owner sweep-corpora server-stop clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

demo: install
	$(PY) -m runbook_lib.cli demo $(DEMO_ARGS)

test: install lint
	@scripts/install_optional.sh
	@# three servers: the embedded PostgreSQL 18 and, side by side, the system (Debian) PostgreSQL where one is
	@# installed: server-dependent tests on both, each notebook/report test (marker `kernel`) once; then the
	@# wheel's PostgreSQL 16 for the tests marked `versions` (tests/fix_passes.py, scripts/embedded16.py)
	$(PY) scripts/test_suite.py $(PYTEST_ARGS)

# ruff's lint and format check over the tree (notebooks/ excluded: scripts/build_notebooks.py writes them), then
# mypy over runbook_lib; all three configured in pyproject.toml. `make test` runs it first: a finding fails it.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# Both benchmarks (lock impact at 100k/1M/5M leads, then runbook's overhead), then benchmarks/RESULTS.md and
# benchmarks/lock_impact.png from their results. About 15 minutes on 2 cores; needs psql. Quick look:
#   make bench BENCH_LOCK_ARGS="--sizes 100k --runs 1" BENCH_OVERHEAD_ARGS="--runs 1" BENCH_BACKFILL_ARGS="--sizes 100k --runs 1"
bench: install
	$(PY) benchmarks/lock_impact.py $(BENCH_LOCK_ARGS)
	$(PY) benchmarks/overhead.py $(BENCH_OVERHEAD_ARGS)
	$(PY) benchmarks/load.py $(BENCH_LOAD_ARGS)
	$(PY) benchmarks/fleet.py $(BENCH_FLEET_ARGS)
	$(PY) benchmarks/deploy.py $(BENCH_DEPLOY_ARGS)
	$(PY) benchmarks/backfill.py $(BENCH_BACKFILL_ARGS)
	$(PY) benchmarks/report.py

# Batch 6's backfill benchmark again on the system's (Debian) PostgreSQL, in a throwaway cluster
# (scripts/system_postgres.py); RESULTS.md gets its table as section 7b. About 50 minutes.
bench-system: install
	$(PY) scripts/system_postgres.py -- sh -c '$(PY) benchmarks/backfill.py --server-url "$$RUNBOOK_TEST_DATABASE_URL" --state-dir "$${TMPDIR:-/tmp}/runbook-bench-system-$$(id -u)" --out benchmarks/results/backfill_system.json $(BENCH_BACKFILL_ARGS)'
	$(PY) benchmarks/report.py

# The three histories in other tools' layouts (openmeter: golang-migrate, dokploy: Drizzle, ohdsi-webapi: Flyway)
# deployed from empty beside psql, on the system's PostgreSQL in a throwaway cluster (openmeter needs pgcrypto,
# which the embedded server lacks); RESULTS.md gets them as section 5b. About 10 minutes.
bench-layouts: install
	$(PY) scripts/system_postgres.py -- sh -c '$(PY) benchmarks/deploy.py --corpus openmeter --corpus dokploy --corpus ohdsi-webapi --server-url "$$RUNBOOK_TEST_DATABASE_URL" --out benchmarks/results/deploy_layouts.json $(BENCH_DEPLOY_ARGS)'
	$(PY) benchmarks/report.py

# The two Prisma histories (langfuse, trigger.dev) deployed from empty beside psql on the system's PostgreSQL with
# fsync=off (commits cheap, as CI databases often run), in a throwaway cluster: runbook's own work per migration,
# split per phase; RESULTS.md gets them as section 5a. About 10 minutes.
bench-deploy-cheap: install
	$(PY) scripts/system_postgres.py --set fsync=off -- sh -c '$(PY) benchmarks/deploy.py --corpus langfuse --corpus trigger.dev --server-url "$$RUNBOOK_TEST_DATABASE_URL" --out benchmarks/results/deploy_fsync_off.json $(BENCH_DEPLOY_ARGS)'
	$(PY) benchmarks/report.py

# Batch 6's backfill benchmark with the embedded server's data in memory (/dev/shm, tmpfs): the migration's own
# share of the application's stalls, without the disk's; RESULTS.md gets it as section 7g. About 40 minutes and
# 4 GB of memory while it runs; the server is stopped and its data removed after.
MEMORY_STATE = /dev/shm/runbook-bench-memory-$(shell id -u)
bench-memory: install
	$(PY) benchmarks/backfill.py --state-dir $(MEMORY_STATE) --out benchmarks/results/backfill_memory.json $(BENCH_BACKFILL_ARGS); \
	  status=$$?; RUNBOOK_HOME=$(MEMORY_STATE) $(PY) -m runbook_lib.cli server stop; rm -rf $(MEMORY_STATE); exit $$status
	$(PY) benchmarks/report.py

# Batch 7 behind the application's 8 s idle transaction, applied by the superuser and by the schema's owner role
# (`mig`: owns the database, the schema and the tables; no pg_read_all_stats, no pg_signal_backend), beside the
# application alone (`app`: DML only), at 100k and 1M leads, 3 runs; RESULTS.md gets it as section 9. About 6
# minutes; creates the roles mig and app on the bench server when absent. With the data on tmpfs as well:
#   make bench-owner BENCH_OWNER_ARGS="--state-dir /dev/shm/runbook-bench-owner --out benchmarks/results/owner_role_memory.json"
# (then stop that server: RUNBOOK_HOME=/dev/shm/runbook-bench-owner .venv/bin/python -m runbook_lib.cli server stop).
bench-owner: install
	$(PY) benchmarks/owner_role.py $(BENCH_OWNER_ARGS)
	$(PY) benchmarks/report.py

# Exactly once as the schema's owner role (no superuser): the kill sweep's named points, random moments and a
# release, each database owned by the role that migrates it; RESULTS.md section 6b. About a minute.
sweep-kill-owner: install
	$(PY) benchmarks/kill_sweep.py --as-owner --points 10 --release-points 3 $(SWEEP_KILL_ARGS)
	$(PY) benchmarks/report.py

# Several hundred generated histories (tests/generated) deployed from empty, validated, broken by hand and validated
# again: false failures and missed defects, recorded in benchmarks/results/generated_histories.json and RESULTS.md
# section 8. `make test` runs 24 of them per server. About 10 minutes for 400 on 2 cores.
sweep-generated: install
	$(PY) benchmarks/generated_histories.py $(SWEEP_ARGS); status=$$?; $(PY) benchmarks/report.py; exit $$status

# The five real histories (tests/corpora: langfuse, trigger.dev, openmeter, dokploy, ohdsi-webapi) each deployed
# complete beside psql, on the embedded PostgreSQL 18 and on the system's PostgreSQL in a throwaway cluster
# (openmeter only where pgcrypto is): recorded in benchmarks/results/corpora_sweep.json and RESULTS.md section 5c.
# `make test` deploys the start of each. About 10 minutes on 2 cores.
sweep-corpora: install
	$(PY) benchmarks/corpora_sweep.py $(SWEEP_CORPORA_ARGS); status=$$?; $(PY) benchmarks/report.py; exit $$status

server-stop: install
	$(PY) -m runbook_lib.cli server stop

clean:
	rm -rf .runbook reports/*/ .pytest_cache
