#!/usr/bin/env bash
# The background worker on a hot standby: it does not run there (and so writes nothing), a queued
# event replicated to the standby stays queued, and after promotion the worker starts and drains it.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db it_standby)
q postgres "ALTER SYSTEM SET pg_runbook.database = '$DB'" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM worker_status() WHERE database = '$DB' AND pid IS NOT NULL)" 30
check "the primary's worker serves the test database" \
  "$(q "$DB" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_runbook worker' AND datname = '$DB'")" "1"

SB=$RUN_DIR/integration-standby
rm -rf "$SB"; make_reachable "$SB"; mkdir -p "$SB/socket"; chown postgres: "$SB/socket"
as_postgres "$PGBIN/pg_basebackup" -D "$SB/data" -R -X stream -c fast -h "$PGHOST" -p "$PGPORT" -U postgres
SBPORT=$(free_port)
cat > "$SB/data/runbook.conf" <<CONF
port = $SBPORT
listen_addresses = ''
unix_socket_directories = '$SB/socket'
shared_preload_libraries = '$PRELOAD_ALL'
cron.database_name = 'postgres'
max_worker_processes = 32
hot_standby = on
CONF
chown postgres: "$SB/data/runbook.conf"
cleanup() {
  as_postgres "$PGBIN/pg_ctl" -D "$SB/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$SB"
  q postgres "ALTER SYSTEM RESET pg_runbook.worker_enabled" >/dev/null
  q postgres "SELECT pg_reload_conf()" >/dev/null
}
trap cleanup EXIT
as_postgres "$PGBIN/pg_ctl" -D "$SB/data" -l "$SB/server.log" -w -t 60 start >/dev/null
sb() { PGHOST=$SB/socket PGPORT=$SBPORT q "$@"; }

check "the standby is in recovery" "$(sb "$DB" "SELECT pg_is_in_recovery()")" "t"
sleep 2
check "no pg_runbook worker runs on the standby" \
  "$(sb "$DB" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_runbook worker'")" "0"

# The primary's worker is switched off, so an event stays queued and replicates as such.
q postgres "ALTER SYSTEM SET pg_runbook.worker_enabled = off" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null
sleep 1
q "$DB" "SELECT cache_put('standby_key', '1', '1 hour', '{standby}'); SELECT invalidate_cache_tag('standby')" >/dev/null
wait_for postgres "SELECT true" 1
PGHOST=$SB/socket PGPORT=$SBPORT wait_for "$DB" "SELECT count(*) = 1 FROM cache_invalidation_queue" 20
sleep 2
check "on the standby the replicated event stays queued" \
  "$(sb "$DB" "SELECT count(*) FROM cache_invalidation_queue")" "1"
check "the standby logged no failed write" \
  "$(grep -c 'read-only transaction\|pg_runbook worker.*ERROR' "$SB/server.log" || true)" "0"

as_postgres "$PGBIN/pg_ctl" -D "$SB/data" -w promote >/dev/null
PGHOST=$SB/socket PGPORT=$SBPORT wait_for "$DB" "SELECT NOT EXISTS (SELECT 1 FROM query_cache WHERE cache_key = 'standby_key')" 30
check "after promotion the worker starts and drains the queue" \
  "$(sb "$DB" "SELECT count(*) FROM cache_invalidation_queue")/$(sb "$DB" "SELECT count(*) FROM query_cache WHERE cache_key = 'standby_key'")" "0/0"
check "the promoted server runs the worker" \
  "$(sb "$DB" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_runbook worker' AND datname = '$DB'")" "1"
finish
