#!/usr/bin/env bash
# Migration verification from real conditions, with the extension in a schema of its own:
# a failed CREATE INDEX CONCURRENTLY, a migration file stopped by an unmet expectation, a build
# still running, and a baseline rolled back with the generated DDL through psql's \gexec.
. "$(dirname "$0")/lib.sh"

DB=migrations_verification
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
q $DB "CREATE SCHEMA runbook; CREATE EXTENSION pg_runbook SCHEMA runbook" >/dev/null
q $DB 'CREATE SCHEMA "App";
       CREATE TABLE "App"."Scan" (id bigserial PRIMARY KEY, "normalizedInput" text NOT NULL,
                                  "createdAt" timestamptz NOT NULL DEFAULT now(), "userId" bigint);
       CREATE TABLE "App"."User" (id bigint PRIMARY KEY);
       INSERT INTO "App"."User" VALUES (1);
       INSERT INTO "App"."Scan" ("normalizedInput", "userId") SELECT $$input $$ || (g % 500), 1 FROM generate_series(1, 1000) g;
       CREATE INDEX "Scan_normalizedInput_idx" ON "App"."Scan" ("normalizedInput");
       CREATE INDEX "Scan_normalizedInput_createdAt_idx" ON "App"."Scan" ("normalizedInput", "createdAt");' >/dev/null

echo "-- the runbook's redundant index"
check "Scan_normalizedInput_idx is redundant to the two-column index" \
  "$(q $DB "SELECT indexname || ' < ' || covered_by FROM runbook.find_redundant_indexes()")" \
  "Scan_normalizedInput_idx < Scan_normalizedInput_createdAt_idx"

echo "-- a CREATE INDEX CONCURRENTLY that fails on duplicate values"
out=$(psql -X -q -d $DB -c 'CREATE UNIQUE INDEX CONCURRENTLY "Scan_normalizedInput_key" ON "App"."Scan" ("normalizedInput")' 2>&1 || true)
check_match "the build failed on duplicates" "$out" "could not create unique index"
check "verify_migration_success() reports the invalid index as FAIL" \
  "$(q $DB "SELECT status || ' ' || object FROM runbook.verify_migration_success() WHERE \"check\" = 'invalid_index'")" \
  'FAIL "App"."Scan_normalizedInput_key"'
check "analyze_index_usage() marks it invalid" \
  "$(q $DB "SELECT is_valid FROM runbook.analyze_index_usage() WHERE indexname = 'Scan_normalizedInput_key'")" "f"
rc=0; out=$(q $DB "SELECT * FROM runbook.assert_migration_success()" 2>&1) || rc=$?
check "assert_migration_success() raises" "$rc" "1"
check_match "naming the invalid index" "$out" 'migration verification failed: invalid_index "App"."Scan_normalizedInput_key"'
q $DB 'DROP INDEX CONCURRENTLY "App"."Scan_normalizedInput_key"' >/dev/null
check "after dropping it, assert_migration_success() passes" \
  "$(q $DB "SELECT count(*) FILTER (WHERE status = 'FAIL') FROM runbook.assert_migration_success()")" "0"

echo "-- a migration file whose expectation is not met stops under ON_ERROR_STOP"
dir=$(mktemp -d); chmod o+rx "$dir"
cat > "$dir/001_scan_user.sql" <<'SQL'
SELECT runbook.expect_migration('001_scan_user', '{"indexes": ["\"App\".\"Scan_userId_idx\"", "\"App\".\"Scan_createdAt_idx\""],
                                                  "constraints": ["\"App\".\"Scan\".\"Scan_userId_fkey\""]}');
CREATE INDEX CONCURRENTLY "Scan_userId_idx" ON "App"."Scan" ("userId");
ALTER TABLE "App"."Scan" ADD CONSTRAINT "Scan_userId_fkey" FOREIGN KEY ("userId") REFERENCES "App"."User" (id);
-- "Scan_createdAt_idx" was forgotten.
SELECT * FROM runbook.assert_migration_success('001_scan_user');
CREATE TABLE "App".after_the_assert ();
SQL
rc=0; out=$(psql -X -q -v ON_ERROR_STOP=1 -d $DB -f "$dir/001_scan_user.sql" 2>&1) || rc=$?
check "psql exits non-zero" "$rc" "3"
check_match "the error names the missing index" "$out" 'expected_index "App"."Scan_createdAt_idx"'
check "nothing after the assert ran" "$(q $DB "SELECT to_regclass('\"App\".after_the_assert') IS NULL")" "t"
echo 'CREATE INDEX CONCURRENTLY "Scan_createdAt_idx" ON "App"."Scan" ("createdAt");
SELECT status, count(*) FROM runbook.assert_migration_success($$001_scan_user$$) GROUP BY status ORDER BY status;' > "$dir/002_fix.sql"
rc=0; out=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -d $DB -f "$dir/002_fix.sql" 2>&1) || rc=$?
check "the fixed migration passes" "$rc" "0"
check "with every row PASS" "$out" "PASS|6"
rm -rf "$dir"

echo "-- a build still running is reported, not failed"
bg $DB 'BEGIN; INSERT INTO "App"."Scan" ("normalizedInput") VALUES ($$held$$); SELECT pg_sleep(4); COMMIT;'
holder=$!
wait_for $DB "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'BEGIN; INSERT%' AND state = 'active')"
bg $DB 'CREATE INDEX CONCURRENTLY "Scan_userId_createdAt_idx" ON "App"."Scan" ("userId", "createdAt")'
builder=$!
wait_for $DB "SELECT EXISTS (SELECT 1 FROM runbook.index_build_progress() WHERE indexname = 'Scan_userId_createdAt_idx')"
check "index_build_progress() shows the build with its table" \
  "$(q $DB "SELECT schemaname || '.' || tablename || ' ' || command FROM runbook.index_build_progress()")" \
  "App.Scan CREATE INDEX CONCURRENTLY"
check "verify_migration_success() warns about it instead of failing" \
  "$(q $DB "SELECT string_agg(\"check\" || ' ' || status, ', ' ORDER BY \"check\") FROM runbook.verify_migration_success() WHERE object LIKE '%Scan_userId_createdAt_idx%'")" \
  "index_build WARN"
wait "$holder" "$builder" || true
check "once built, nothing is left behind" \
  "$(q $DB "SELECT count(*) FROM runbook.verify_migration_success() WHERE status <> 'PASS'")" "0"

echo "-- baseline, change, roll back with \\gexec: no difference left"
q $DB "SELECT runbook.schema_baseline('before_deploy')" >/dev/null
q $DB 'CREATE INDEX CONCURRENTLY "Scan_recent_idx" ON "App"."Scan" ("createdAt") WHERE "userId" IS NOT NULL' >/dev/null
q $DB 'DROP INDEX CONCURRENTLY "App"."Scan_normalizedInput_idx"' >/dev/null
q $DB 'ALTER TABLE "App"."Scan" DROP CONSTRAINT "Scan_userId_fkey"' >/dev/null
q $DB 'ALTER TABLE "App"."Scan" ADD CONSTRAINT "Scan_input_not_blank" CHECK ("normalizedInput" <> $$$$)' >/dev/null
check "schema_diff() sees four changes" "$(q $DB "SELECT count(*) FROM runbook.schema_diff('before_deploy')")" "4"
rc=0; out=$(printf '%s\n' "SELECT statement FROM runbook.rollback_ddl('before_deploy') ORDER BY step \\gexec" \
  | psql -X -q -v ON_ERROR_STOP=1 -d $DB 2>&1) || rc=$?
check "the rollback DDL runs" "$rc" "0"
check "schema_diff() is empty after it" "$(q $DB "SELECT count(*) FROM runbook.schema_diff('before_deploy')")" "0"
check "the dropped index is back and valid" \
  "$(q $DB "SELECT indisvalid FROM pg_index WHERE indexrelid = '\"App\".\"Scan_normalizedInput_idx\"'::regclass")" "t"

finish
