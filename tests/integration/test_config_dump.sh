#!/usr/bin/env bash
# pg_dump keeps the extension's configuration tables: a dump restored into a new database has the
# retention policies, migration expectations, schema baselines, the SLO and rollback rules users
# added, and their edits to the built-in rules, with the built-ins seeded again and no duplicates.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db it_dump)
q "$DB" "CREATE TABLE events (id int PRIMARY KEY, at timestamptz);
  INSERT INTO retention_policies (table_schema, table_name, time_column, keep) VALUES ('public', 'events', 'at', '30 days');
  SELECT expect_migration('m1', '{\"tables\": [\"public.events\"]}');
  SELECT schema_baseline('before-m1');
  UPDATE rollback_triggers SET threshold = 0.02 WHERE name = 'error_rate';
  UPDATE rollback_triggers SET enabled = false WHERE name = 'cache_hit_rate';
  INSERT INTO slo_definitions (name, metric, threshold, level) VALUES ('checkout_p99', 'p99_ms', 900, 'PAGE');" >/dev/null

check "an edited built-in rule is no longer built-in" \
  "$(q "$DB" "SELECT string_agg(name || ':' || builtin, ',' ORDER BY name) FROM rollback_triggers")" \
  "cache_hit_rate:false,error_rate:false,mv_refresh_failures:true,p99_latency:true"

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS it_dump_restored WITH (FORCE)" -c "CREATE DATABASE it_dump_restored" >/dev/null
rc=0; "$PGBIN/pg_dump" -d "$DB" | psql -X -q -v ON_ERROR_STOP=1 -d it_dump_restored >/dev/null 2>&1 || rc=$?
check "the dump restores without an error" "$rc" "0"
R=it_dump_restored
check "retention policies are restored" "$(q $R "SELECT table_name || ' ' || keep FROM retention_policies")" "events 30 days"
check "migration expectations are restored" "$(q $R "SELECT migration FROM migration_expectations")" "m1"
check "schema baselines are restored" "$(q $R "SELECT label FROM schema_baselines")" "before-m1"
check "baseline objects are restored" \
  "$(q $R "SELECT count(*) > 0 FROM schema_baseline_objects WHERE label = 'before-m1'")" "t"
check "rollback triggers: built-ins seeded again, edits kept, no duplicates" \
  "$(q $R "SELECT string_agg(name || ':' || threshold || ':' || enabled, ',' ORDER BY name) FROM rollback_triggers")" \
  "cache_hit_rate:20:false,error_rate:0.02:true,mv_refresh_failures:2:true,p99_latency:1200:true"
check "a user's SLO rule is restored beside the five built-ins" \
  "$(q $R "SELECT count(*) FILTER (WHERE builtin) || '+' || string_agg(name, ',') FILTER (WHERE NOT builtin) FROM slo_definitions")" \
  "5+checkout_p99"
check "the restored database judges its enabled rules (the disabled one is left out)" \
  "$(q $R "SELECT count(*) FROM should_rollback()")" "3"
psql -X -q -d postgres -c "DROP DATABASE it_dump_restored WITH (FORCE)" >/dev/null
finish
