#!/usr/bin/env bash
# index analysis: analyze_index_usage() + find_redundant_indexes() on a schema of many tables and
# indexes, against a plain query over pg_stat_user_indexes joined to pg_index (what a DBA would
# write by hand), at three sizes to show how each grows.
. "$(dirname "$0")/lib.sh"
B="index analysis"
TABLES_PER_STEP=$(size 200 4)   # 5 indexes per table: 1k, 5k, 10k indexes at full size
STEPS=$(size "1 5 10" "1 2")

baseline="SELECT s.schemaname, s.relname, s.indexrelname, s.idx_scan, s.idx_tup_read, s.idx_tup_fetch,
                 pg_relation_size(s.indexrelid), i.indisunique, i.indisprimary, i.indisvalid,
                 pg_get_indexdef(s.indexrelid)
          FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid"
runbook="SELECT * FROM analyze_index_usage(); SELECT * FROM find_redundant_indexes();"

q bench "CREATE SCHEMA bench_idx" >/dev/null
made=0
for step in $STEPS; do
  want=$((step * TABLES_PER_STEP))
  q bench "DO \$\$ BEGIN FOR t IN $((made + 1))..$want LOOP
    EXECUTE format('CREATE TABLE bench_idx.t%s (id int PRIMARY KEY, a int, b int, c text, d timestamptz)', t);
    EXECUTE format('CREATE INDEX ON bench_idx.t%s (a)', t);
    EXECUTE format('CREATE INDEX ON bench_idx.t%s (a, b)', t);
    EXECUTE format('CREATE INDEX ON bench_idx.t%s (lower(c)) WHERE d IS NOT NULL', t);
    EXECUTE format('CREATE INDEX ON bench_idx.t%s (d)', t);
  END LOOP; END \$\$" >/dev/null
  made=$want
  n=$(q bench "SELECT count(*) FROM pg_stat_user_indexes")
  for _ in $(seq "$RUNS"); do
    measure "$B" "pg_runbook: analyze_index_usage() + find_redundant_indexes(), $n indexes" "$(time_ms bench "$runbook")" ms
    measure "$B" "baseline: pg_stat_user_indexes join pg_index, $n indexes" "$(time_ms bench "$baseline")" ms
  done
  last=$n
done
target "$B" "pg_runbook: analyze_index_usage() + find_redundant_indexes(), $last indexes" \
  "baseline: pg_stat_user_indexes join pg_index, $last indexes" ge 0.3333 speedup
