#!/usr/bin/env bash
# drop_old_partitions in an extension created in its own schema, and under pg_runbook.lock_timeout
# while another session holds a lock on the table: it gives up and drops nothing.
. "$(dirname "$0")/lib.sh"
DB=$(psql -X -q -d postgres -c "DROP DATABASE IF EXISTS it_retention WITH (FORCE)" -c "CREATE DATABASE it_retention" >/dev/null; echo it_retention)
q "$DB" "CREATE SCHEMA runbook; CREATE EXTENSION pg_runbook SCHEMA runbook" >/dev/null
q "$DB" "CREATE TABLE ev (at date NOT NULL) PARTITION BY RANGE (at);
DO \$\$ BEGIN FOR i IN 0..29 LOOP
  EXECUTE format('CREATE TABLE ev_%s PARTITION OF ev FOR VALUES FROM (%L) TO (%L)', i,
    date_trunc('month', current_date)::date - make_interval(months => i),
    date_trunc('month', current_date)::date - make_interval(months => i - 1));
END LOOP; END \$\$;" >/dev/null
check "dry run in a non-default schema" "$(q "$DB" "SELECT count(*) FROM runbook.drop_old_partitions(24, dry_run => true) WHERE action = 'would drop'")" "5"
q "$DB" "INSERT INTO runbook.retention_policies VALUES ('public', 'ev', 'at', '24 months', 'drop_partitions')" >/dev/null
check "policies read from the extension's schema" "$(q "$DB" "SELECT count(*) FROM runbook.apply_data_retention_policies(true)")" "5"
bg "$DB" "BEGIN; LOCK TABLE ev IN ACCESS SHARE MODE; SELECT pg_sleep(5); COMMIT;"
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'ev'::regclass AND mode = 'AccessShareLock' AND pid <> pg_backend_pid())"
out=$(q "$DB" "SET pg_runbook.lock_timeout = '200ms'; SELECT count(*) FROM runbook.drop_old_partitions(24, 'ev')" 2>&1 || true)
check_match "a held lock makes it give up" "$out" "lock timeout"
check "nothing dropped" "$(q "$DB" "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ev'::regclass")" "30"
wait
check "drops once the lock is gone" "$(q "$DB" "SELECT count(*) FROM runbook.drop_old_partitions(24, 'ev') WHERE action = 'dropped'")" "5"
finish
