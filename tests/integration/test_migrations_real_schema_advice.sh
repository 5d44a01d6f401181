#!/usr/bin/env bash
# One run of every check over a schema as real deployments have them: mixed-case names, several
# schemas, a partitioned table with a detached partition and a default one, an exclusion
# constraint, Supabase's API roles, a cancelled concurrent index build, an index made ON ONLY a
# partitioned parent. No check may FAIL for something that is fine; every statement the checks
# print is run as printed (one by one, through psql, as a DBA would) and must succeed; afterwards
# the checks are clean, and the baseline's rollback DDL, run the same way, also succeeds.
. "$(dirname "$0")/lib.sh"

DB=real_schema_advice
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
q $DB "CREATE SCHEMA runbook; CREATE EXTENSION pg_runbook SCHEMA runbook" >/dev/null
psql -X -q -d postgres -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
END \$\$" >/dev/null
q $DB 'CREATE SCHEMA "App"; CREATE SCHEMA billing;
  GRANT USAGE ON SCHEMA "App" TO anon, authenticated;
  CREATE TABLE "App"."User" (id bigint PRIMARY KEY, email text NOT NULL);
  CREATE TABLE "App"."Scan" (id bigserial PRIMARY KEY, "userId" bigint REFERENCES "App"."User" (id),
                             dedupe text, lookup text, "createdAt" timestamptz NOT NULL DEFAULT now());
  CREATE INDEX "Scan_dedupe_lookup_idx" ON "App"."Scan" (dedupe, lookup);
  CREATE INDEX "Scan_dedupe_idx" ON "App"."Scan" (dedupe);
  CREATE TABLE "App"."Booking" (id int PRIMARY KEY, during tstzrange NOT NULL,
                                CONSTRAINT "Booking_no_overlap" EXCLUDE USING gist (during WITH &&));
  CREATE TABLE billing."Invoice" (id bigint NOT NULL, "issuedAt" date NOT NULL, "customerId" bigint REFERENCES "App"."User" (id),
                                  PRIMARY KEY (id, "issuedAt")) PARTITION BY RANGE ("issuedAt");
  CREATE TABLE billing."Invoice_2024" PARTITION OF billing."Invoice" FOR VALUES FROM (DATE $$2024-01-01$$) TO (DATE $$2025-01-01$$);
  CREATE TABLE billing."Invoice_2025" PARTITION OF billing."Invoice" FOR VALUES FROM (DATE $$2025-01-01$$) TO (DATE $$2026-01-01$$);
  CREATE TABLE billing."Invoice_2026" PARTITION OF billing."Invoice" FOR VALUES FROM (DATE $$2026-01-01$$) TO (DATE $$2027-01-01$$);
  CREATE TABLE billing."Invoice_default" PARTITION OF billing."Invoice" DEFAULT;
  CREATE INDEX "Invoice_customerId_idx" ON billing."Invoice" ("customerId");
  CREATE TABLE billing."Payment" (id bigint PRIMARY KEY, "invoiceId" bigint, "issuedAt" date);
  CREATE VIEW "App"."PublicScan" WITH (security_invoker = true) AS SELECT id, "createdAt" FROM "App"."Scan";
  GRANT SELECT ON "App"."PublicScan" TO anon, authenticated;
  ALTER TABLE "App"."User" ENABLE ROW LEVEL SECURITY;
  CREATE POLICY "User_self" ON "App"."User" FOR SELECT TO authenticated USING (true);
  INSERT INTO "App"."User" SELECT g, $$u$$ || g FROM generate_series(1, 50) g;
  INSERT INTO "App"."Scan" ("userId", dedupe, lookup) SELECT 1 + g % 50, $$d$$ || g, $$l$$ || g FROM generate_series(1, 2000) g;
  INSERT INTO billing."Invoice" SELECT g, DATE $$2024-01-01$$ + g, 1 + g % 50 FROM generate_series(1, 900) g;
  ANALYZE' >/dev/null
q $DB "SELECT runbook.schema_baseline('before')" >/dev/null
q $DB "SELECT runbook.expect_migration('20260101_scan_lookup', '{\"indexes\": [\"Scan_dedupe_lookup_idx\", \"App.Scan_pkey\"],
  \"constraints\": [\"App.Booking.Booking_no_overlap\", \"billing.Invoice.Invoice_pkey\"], \"tables\": [\"billing.Invoice\", \"App.User\"]}')" >/dev/null

echo "-- what a deploy leaves behind"
# A partition detached after the baseline; an index made ON ONLY the parent; a NOT VALID key.
q $DB 'ALTER TABLE billing."Invoice" DETACH PARTITION billing."Invoice_2024";
  CREATE INDEX "Invoice_issuedAt_idx" ON ONLY billing."Invoice" ("issuedAt");
  ALTER TABLE billing."Payment" ADD CONSTRAINT "Payment_invoice_fk" FOREIGN KEY ("invoiceId", "issuedAt")
    REFERENCES billing."Invoice" (id, "issuedAt") NOT VALID' >/dev/null
# A concurrent build cancelled while it waits for a writer's transaction: an invalid index.
bg $DB "BEGIN; INSERT INTO \"App\".\"Scan\" (\"userId\", dedupe) VALUES (1, 'w'); SELECT pg_sleep(8); COMMIT"
writer=$!
wait_for $DB "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE 'BEGIN; INSERT INTO%' AND state = 'active')"
out=$(psql -X -q -d $DB -c "SET statement_timeout = '1s'" \
  -c 'CREATE INDEX CONCURRENTLY "Scan_createdAt_idx" ON "App"."Scan" ("createdAt")' 2>&1 || true)
check_match "the concurrent build was cancelled" "$out" "canceling statement due to statement timeout"
wait $writer
# Supabase lints: a view that bypasses RLS, a table with RLS and no policy, a mutable function.
q $DB 'CREATE VIEW "App"."ScanFeed" AS SELECT * FROM "App"."Scan";
  GRANT SELECT ON "App"."ScanFeed" TO anon;
  CREATE TABLE "App"."Audit" (id int PRIMARY KEY); ALTER TABLE "App"."Audit" ENABLE ROW LEVEL SECURITY;
  CREATE FUNCTION "App".touch() RETURNS int LANGUAGE sql AS $$SELECT 1$$' >/dev/null

fails() { # every FAIL of every check, as check|object lines
  q $DB "SELECT string_agg(c || '|' || o, ' ' ORDER BY c, o) FROM (
    SELECT \"check\" c, object o FROM runbook.verify_migration_success() WHERE status = 'FAIL'
    UNION ALL SELECT \"check\", object FROM runbook.check_data_integrity() WHERE status = 'FAIL'
    UNION ALL SELECT \"check\", object FROM runbook.validate_security_configuration()
              WHERE status = 'FAIL' AND \"check\" NOT IN ('password_encryption', 'public_schema_create')) f"
}
check "the FAILs are exactly the planted problems" "$(fails)" \
  'invalid_index|"App"."Scan_createdAt_idx" invalid_index|billing."Invoice_issuedAt_idx" view_without_security_invoker|"App"."ScanFeed"'
check "the expectations with catalog-spelled names hold" \
  "$(q $DB "SELECT string_agg(DISTINCT status, ',') FROM runbook.verify_migration('20260101_scan_lookup')")" "PASS"
check "the detached partition keeps its index in the rollback" \
  "$(q $DB "SELECT count(*) FROM runbook.rollback_ddl('before') WHERE statement LIKE '%Invoice_2024%'")" "0"
check "the exclusion constraint's index is never offered for dropping" \
  "$(q $DB "SELECT count(*) FROM runbook.find_unused_indexes(min_stats_age => '0') WHERE indexname = 'Booking_no_overlap'")" "0"

run_all() { # run_all LABEL SQL: runs each statement SQL returns, one by one; counts failures
  local label=$1 n=0 bad=0 stmt
  while IFS= read -r -d '' stmt; do
    [ -n "$stmt" ] || continue
    n=$((n + 1))
    if ! out=$(printf '%s\n' "$stmt;" | psql -X -q -v ON_ERROR_STOP=1 -d $DB 2>&1); then
      bad=$((bad + 1)); echo "       failed: $stmt"; echo "       $out"
    fi
  done < <(psql -X -q -A -t -0 -d $DB -c "$2")
  check "$label: all $n statements succeed" "$bad" "0"
  [ "$n" -gt 0 ] || { echo "  FAIL $label printed no statement"; failures=$((failures + 1)); }
}
advice="SELECT s FROM runbook.verify_migration_success() v,
          regexp_split_to_table(substring(v.detail FROM 'run: (.*)\$'), '; ') WITH ORDINALITY t(s, i)
        WHERE v.detail LIKE '%run: %' ORDER BY v.\"check\", v.object, t.i"
echo "-- every statement the checks print, run as printed"
run_all "check_data_integrity advice" "SELECT substring(detail FROM 'run: (.*)\$') FROM runbook.check_data_integrity() WHERE detail LIKE '%run: %'"
run_all "verify_migration_success advice" "$advice"
check "the ON ONLY index is valid, attached to every partition" \
  "$(q $DB "SELECT i.indisvalid, (SELECT count(*) FROM pg_inherits WHERE inhparent = i.indexrelid)
            FROM pg_index i WHERE i.indexrelid = 'billing.\"Invoice_issuedAt_idx\"'::regclass")" "t|3"
run_all "security remediations" "SELECT remediation FROM runbook.validate_security_configuration()
  WHERE remediation <> '' AND (object LIKE '\"App\".%' OR object LIKE 'billing.%')"
run_all "missing foreign-key indexes" "SELECT create_statement FROM runbook.find_missing_fk_indexes()"
run_all "redundant indexes" "SELECT drop_statement FROM runbook.find_redundant_indexes()"
# The migration expects Scan_dedupe_lookup_idx (no query has used it yet): a DBA keeps it.
run_all "unused indexes" "SELECT drop_statement FROM runbook.find_unused_indexes(min_stats_age => '0')
  WHERE drop_statement IS NOT NULL AND indexname <> 'Scan_dedupe_lookup_idx'"

echo "-- afterwards"
check "no FAIL is left" "$(fails)" ""

echo "-- the rollback to the baseline, run as printed"
run_all "rollback_ddl" "SELECT statement FROM runbook.rollback_ddl('before') ORDER BY step"
check "nothing left to roll back" "$(q $DB "SELECT count(*) FROM runbook.rollback_ddl('before')")" "0"
check "schema_diff: nothing added or dropped since the baseline" \
  "$(q $DB "SELECT count(*) FROM runbook.schema_diff('before') WHERE change <> 'changed'")" "0"

psql -X -q -d postgres -c "DROP DATABASE $DB WITH (FORCE)" >/dev/null
finish
