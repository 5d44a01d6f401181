#!/usr/bin/env bash
# migration lint: lint_migration() over a 500-statement migration file (ten kinds of statement on
# ten tables, one of them with 200,000 rows), beside two plain-SQL baselines in the same run: the
# floor (the same text sent to the server and measured with length(), no parse) and running the
# same migration for real on empty copies of the tables, rolled back.
. "$(dirname "$0")/lib.sh"
B="migration lint"
N=$(size 500 50)
ROWS=$(size 200000 2000)

q bench "DROP SCHEMA IF EXISTS bench_lint CASCADE; CREATE SCHEMA bench_lint;
  DO \$\$ BEGIN FOR t IN 1..10 LOOP
    EXECUTE format('CREATE TABLE bench_lint.t%s (id bigint PRIMARY KEY, a int, b text, c numeric(10,2))', t);
  END LOOP; END \$\$;
  INSERT INTO bench_lint.t1 SELECT g, g % 100, 'b' || g, g FROM generate_series(1, $ROWS) g;
  CREATE VIEW bench_lint.v1 AS SELECT id, b FROM bench_lint.t1" >/dev/null
q bench "VACUUM ANALYZE bench_lint.t1" >/dev/null

file=$RUN_DIR/bench-lint-migration.sql
{
  echo "SET lock_timeout = '2s';"
  for i in $(seq 1 $((N - 1))); do
    t="bench_lint.t$(( (i % 10) + 1 ))"
    case $((i % 10)) in
      0) echo "CREATE INDEX i$i ON $t (a);" ;;
      1) echo "ALTER TABLE $t ADD COLUMN x$i timestamptz DEFAULT clock_timestamp();" ;;
      2) echo "ALTER TABLE $t ADD COLUMN y$i int DEFAULT 0;" ;;
      3) echo "ALTER TABLE $t ALTER COLUMN b TYPE varchar(200);" ;;
      4) echo "ALTER TABLE $t ALTER COLUMN a SET NOT NULL;" ;;
      5) echo "ALTER TABLE $t ADD CONSTRAINT c$i CHECK (a >= 0) NOT VALID;" ;;
      6) echo "ALTER TABLE bench_lint.t$(( ((i - 1) % 10) + 1 )) VALIDATE CONSTRAINT c$((i - 1));" ;;
      7) echo "CREATE INDEX CONCURRENTLY j$i ON $t (b);" ;;
      8) echo "ALTER TABLE $t RENAME COLUMN b TO b$i;" ;;
      9) echo "DROP INDEX CONCURRENTLY IF EXISTS i$((i - 9));" ;;
    esac
  done
} > "$file"
migration=$(cat "$file")
statements=$(q bench "SELECT count(DISTINCT statement) FROM lint_migration(\$m\$$migration\$m\$)")
# Running it for real: on empty copies, rolled back, without the CONCURRENTLY statements (they
# cannot run in a transaction block) and the renames (each renames a column already renamed).
real=$RUN_DIR/bench-lint-run.sql
{ echo "BEGIN;"; echo "SET LOCAL search_path = bench_lint_empty, public;"; grep -v -e CONCURRENTLY -e RENAME "$file" | sed 's/bench_lint\./bench_lint_empty./g'; echo "ROLLBACK;"; } > "$real"
q bench "DROP SCHEMA IF EXISTS bench_lint_empty CASCADE; CREATE SCHEMA bench_lint_empty;
  DO \$\$ BEGIN FOR t IN 1..10 LOOP
    EXECUTE format('CREATE TABLE bench_lint_empty.t%s (id bigint PRIMARY KEY, a int, b text, c numeric(10,2))', t);
  END LOOP; END \$\$" >/dev/null

for _ in $(seq "$RUNS"); do
  measure "$B" "pg_runbook: lint_migration(), $N statements" \
    "$(time_ms bench "SELECT count(*), count(*) FILTER (WHERE status = 'FAIL') FROM lint_migration(\$m\$$migration\$m\$)")" ms
  measure "$B" "floor: the same text sent and measured with length()" \
    "$(time_ms bench "SELECT length(\$m\$$migration\$m\$)")" ms
  measure "$B" "baseline: running the migration on empty tables, rolled back" "$(time_file_ms bench "$real")" ms
done
note "$B" "$statements statements judged with a finding; the judged table bench_lint.t1 has $ROWS rows"
target "$B" "pg_runbook: lint_migration(), $N statements" - le 1000 abs
q bench "DROP SCHEMA bench_lint CASCADE; DROP SCHEMA bench_lint_empty CASCADE" >/dev/null
