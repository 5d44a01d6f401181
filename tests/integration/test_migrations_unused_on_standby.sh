#!/usr/bin/env bash
# Index statistics on a hot standby count the standby's own scans, not the primary's: there an
# unscanned index is "unknown", with the reason, never "unused" with a drop statement.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db it_unused_standby)
q "$DB" 'CREATE SCHEMA "App"; CREATE TABLE "App"."Scan" (id int PRIMARY KEY, dedupe text);
         CREATE INDEX "Scan_dedupe_idx" ON "App"."Scan" (dedupe)' >/dev/null
check "on the primary, with a window the statistics cover, the index is unused" \
  "$(q "$DB" "SELECT verdict || '|' || (drop_statement IS NOT NULL) FROM find_unused_indexes(min_stats_age => '0') WHERE indexname = 'Scan_dedupe_idx'")" \
  "unused|true"

SB=$RUN_DIR/integration-unused-standby
rm -rf "$SB"; make_reachable "$SB"; mkdir -p "$SB/socket"; chown postgres: "$SB/socket"
as_postgres "$PGBIN/pg_basebackup" -D "$SB/data" -R -X stream -c fast -h "$PGHOST" -p "$PGPORT" -U postgres
SBPORT=$(free_port)
printf "port = %s\nlisten_addresses = ''\nunix_socket_directories = '%s'\nhot_standby = on\nmax_worker_processes = 32\nshared_preload_libraries = '%s'\ncron.database_name = 'postgres'\n" \
  "$SBPORT" "$SB/socket" "$PRELOAD_ALL" > "$SB/data/runbook.conf"
chown postgres: "$SB/data/runbook.conf"
trap 'as_postgres "$PGBIN/pg_ctl" -D "$SB/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$SB"' EXIT
as_postgres "$PGBIN/pg_ctl" -D "$SB/data" -l "$SB/server.log" -w -t 60 start >/dev/null
sb() { PGHOST=$SB/socket PGPORT=$SBPORT q "$@"; }

check "the standby is in recovery" "$(sb "$DB" "SELECT pg_is_in_recovery()")" "t"
check "on the standby the same index is unknown, without a drop statement" \
  "$(sb "$DB" "SELECT verdict || '|' || (drop_statement IS NULL) FROM find_unused_indexes(min_stats_age => '0') WHERE indexname = 'Scan_dedupe_idx'")" \
  "unknown|true"
check_match "and the detail says why" \
  "$(sb "$DB" "SELECT detail FROM find_unused_indexes(min_stats_age => '0') WHERE indexname = 'Scan_dedupe_idx'")" \
  "on a standby: these statistics count this server's scans only"
check_match "analyze_index_usage says the same" \
  "$(sb "$DB" "SET pg_runbook.unused_index_min_stats_age = 0; SELECT recommendation FROM analyze_index_usage() WHERE indexname = 'Scan_dedupe_idx'")" \
  "^unknown: no scans, but on a standby"
finish
