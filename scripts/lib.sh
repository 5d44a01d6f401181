# Shared shell helpers for pg_runbook's Makefile targets: paths, throwaway clusters, psql.
# Sourced, not run. Everything runs as root; PostgreSQL itself runs as the `postgres` user.

set -euo pipefail
shopt -s nullglob

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=${PGBIN:-$("$PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
RUN_DIR=${RUN_DIR:-$REPO/.run}
PRELOAD_ALL="pg_runbook,pg_stat_statements,pg_cron"

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

as_postgres() { runuser -u postgres -- "$@"; }

# The postgres user must be able to walk down to every directory it uses; a checkout under a
# 0700 directory would make initdb fail with "permission denied". Grant traverse (o+x) only.
make_reachable() {
  local dir=$1
  mkdir -p "$dir"
  chown postgres: "$dir"
  local p=$dir
  while [ "$p" != "/" ]; do
    p=$(dirname "$p")
    if ! as_postgres test -x "$p"; then chmod o+x "$p"; fi
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cluster_start NAME [PRELOAD] [EXTRA_CONF_LINE...]
# Starts (creating if needed) a throwaway cluster under $RUN_DIR/NAME and writes its connection
# settings to $RUN_DIR/NAME/env (PGHOST, PGPORT, PGUSER), which it also exports.
cluster_start() {
  local name=$1 preload=${2-$PRELOAD_ALL}; shift $(( $# >= 2 ? 2 : 1 ))
  local dir=$RUN_DIR/$name
  make_reachable "$dir"
  if [ -f "$dir/env" ]; then
    # shellcheck disable=SC1091
    . "$dir/env"
    if as_postgres "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then return 0; fi
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_postgres "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1
  fi
  local port; port=$(free_port)
  mkdir -p "$dir/socket" && chown postgres: "$dir/socket"
  {
    echo "# written by scripts/lib.sh cluster_start"
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir/socket'"
    echo "shared_preload_libraries = '$preload'"
    echo "cron.database_name = 'postgres'"
    echo "max_worker_processes = 32"
    echo "fsync = on"
    for line in "$@"; do echo "$line"; done
  } > "$dir/data/runbook.conf"
  chown postgres: "$dir/data/runbook.conf"
  grep -q "include_if_exists = 'runbook.conf'" "$dir/data/postgresql.conf" \
    || echo "include_if_exists = 'runbook.conf'" >> "$dir/data/postgresql.conf"
  # -c: core files allowed (runuser's PAM limits set the soft limit to 0); a crash then leaves
  # a core file in the data directory for gdb, and scripts/integration.sh fails on it.
  as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -c -w -t 60 start >/dev/null
  printf 'export PGHOST=%s PGPORT=%s PGUSER=postgres\n' "$dir/socket" "$port" > "$dir/env"
  # shellcheck disable=SC1091
  . "$dir/env"
}

cluster_restart() {
  local dir=$RUN_DIR/$1
  as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -c -w -t 60 restart >/dev/null
}

cluster_stop() {
  local dir=$RUN_DIR/$1
  [ -d "$dir/data" ] || return 0
  as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

cluster_destroy() {
  cluster_stop "$1"
  rm -rf "${RUN_DIR:?}/$1"
}

# q DB SQL: one psql call, unaligned and tuples only, stopping on the first error.
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
