#!/usr/bin/env bash
# ALTER EXTENSION pg_runbook UPDATE from 0.1.0 to this version: data written under 0.1.0 in every
# table survives, and the upgraded catalog (functions, tables, columns, defaults, constraints,
# indexes, triggers, comments, grants, pg_dump registrations) is the same as a fresh install's.
#
# tests/upgrade/pg_runbook--0.1.0.sql is 0.1.0's install script as `cargo pgrx schema` wrote it at
# that release (commit e966ac3); this version's library still exports every C symbol it names.
. "$(dirname "$0")/lib.sh"
extdir="$("$PG_CONFIG" --sharedir)/extension"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
cp "$REPO/tests/upgrade/pg_runbook--0.1.0.sql" "$extdir/"
trap 'rm -f "$extdir/pg_runbook--0.1.0.sql"' EXIT

OLD=it_upgrade_old
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $OLD WITH (FORCE)" -c "CREATE DATABASE $OLD" >/dev/null
q "$OLD" "CREATE EXTENSION pg_runbook VERSION '0.1.0'" >/dev/null
check "0.1.0 installs" "$(q "$OLD" "SELECT extversion FROM pg_extension WHERE extname = 'pg_runbook'")" "0.1.0"

# Rows in every table, written as 0.1.0's tables take them (not through functions: the library
# loaded is already this version's).
psql -X -q -d "$OLD" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
INSERT INTO query_cache (cache_key, result, query_sql, tags, expires_at, hits)
  VALUES ('k1', '[{"a": 123456789012345678901234567890}]', 'SELECT 1 AS a', '{t1}', now() + interval '1 hour', 3),
         ('k2', '{"b": 2}', NULL, '{}', now() + interval '1 hour', 0);
INSERT INTO query_cache_stale (cache_key, query_sql, tags, ttl, hits) VALUES ('s1', 'SELECT 2', '{t2}', '1 hour', 5);
INSERT INTO cache_invalidation_queue (cache_key, reason) VALUES ('k9', 'upgrade test');
INSERT INTO cache_invalidation_rejected (id, cache_key, tag, problem) VALUES (1, 'a', 'b', 'both set');
INSERT INTO performance_metrics (endpoint, status_code, duration_ms) SELECT '/u', 200, g FROM generate_series(1, 50) g;
INSERT INTO performance_analytics_5min (bucket, endpoint, sketch, requests, errors, cache_hits)
  SELECT date_bin('5 minutes', now(), '2000-01-01') - interval '5 minutes', '/u', request_sketch(g, 200, false), 50, 0, 0
  FROM generate_series(1, 50) g;
INSERT INTO metrics_rollup_log (ran_at, seq_value, folded, pruned) VALUES (now(), 50, 50, 0);
UPDATE slo_definitions SET threshold = 650 WHERE name = 'p95_latency_warn';
INSERT INTO slo_definitions (name, metric, threshold, level) VALUES ('team_rule', 'p99_ms', 900, 'PAGE');
INSERT INTO rollback_triggers (name, metric, threshold) VALUES ('team_trigger', 'p99_ms', 5000);
INSERT INTO retention_policies (table_schema, table_name, time_column, keep) VALUES ('public', 'events', 'at', '30 days');
INSERT INTO mv_refresh_log (run_id, schemaname, matview, mode, status, started_at, finished_at, duration_ms)
  VALUES (1, 'public', 'v', 'plain', 'success', now(), now(), 1.5);
INSERT INTO mv_refresh_runs (run_id, worker_pid, caller_pid, views, options, started_at) VALUES (1, 1, 2, 1, '', now());
INSERT INTO migration_expectations (migration, expected) VALUES ('m1', '{"tables": ["public.t"]}');
INSERT INTO schema_baselines (label) VALUES ('b1');
SQL
tables="query_cache query_cache_stale cache_invalidation_queue cache_invalidation_rejected performance_metrics
  performance_analytics_5min metrics_rollup_log slo_definitions rollback_triggers retention_policies
  mv_refresh_log mv_refresh_runs migration_expectations schema_baselines"
counts() { for t in $tables; do printf '%s=%s ' "$t" "$(q "$1" "SELECT count(*) FROM $t")"; done; }
before=$(counts "$OLD")

q "$OLD" "ALTER EXTENSION pg_runbook UPDATE" >/dev/null
check "the update reaches $version" "$(q "$OLD" "SELECT extversion FROM pg_extension WHERE extname = 'pg_runbook'")" "$version"
check "every row of every table survived" "$(counts "$OLD")" "$before"
check "a user's edit of a built-in rule survived" \
  "$(q "$OLD" "SELECT threshold FROM slo_definitions WHERE name = 'p95_latency_warn'")" "650"
check "a cached number is unchanged" "$(q "$OLD" "SELECT cache_get('k1')")" '[{"a": 123456789012345678901234567890}]'
check "an entry cached under 0.1.0 belongs to the extension's owner" \
  "$(q "$OLD" "SELECT owner_role::regrole FROM query_cache WHERE cache_key = 'k1'")" "postgres"

NEW=$(fresh_db it_upgrade_new)
q "$OLD" "$(cat "$REPO/tests/upgrade/catalog.sql")" >"$RUN_DIR/upgrade-catalog.upgraded"
q "$NEW" "$(cat "$REPO/tests/upgrade/catalog.sql")" >"$RUN_DIR/upgrade-catalog.fresh"
check_match "the catalog listing covers the extension (routines, tables, columns)" \
  "$(grep -c '^routine ' "$RUN_DIR/upgrade-catalog.fresh") $(grep -c '^column ' "$RUN_DIR/upgrade-catalog.fresh")" \
  "^[0-9]{2,} [0-9]{3,}$"
diff "$RUN_DIR/upgrade-catalog.upgraded" "$RUN_DIR/upgrade-catalog.fresh" >"$RUN_DIR/upgrade-catalog.diff" || true
check "the upgraded catalog is a fresh install's (diff in .run/upgrade-catalog.diff)" \
  "$(wc -l < "$RUN_DIR/upgrade-catalog.diff")" "0"
head -40 "$RUN_DIR/upgrade-catalog.diff"

psql -X -q -d postgres -c "DROP DATABASE $OLD WITH (FORCE)" -c "DROP DATABASE $NEW WITH (FORCE)" >/dev/null
finish
