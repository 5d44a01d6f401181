#!/usr/bin/env bash
# Installs what building and testing pg_runbook needs on a fresh Debian 12 machine, and nothing
# that is already there: apt packages, cargo-pgrx 0.18.0, and `cargo pgrx init` against Debian's
# PostgreSQL 15. Quick when everything is present.
. "$(dirname "$0")/lib.sh"

PACKAGES=(postgresql-15 postgresql-contrib postgresql-server-dev-15 postgresql-15-cron
          libclang-dev clang sudo python3 sqlsmith)
[ "${WITH_BENCH_PACKAGES:-0}" = 1 ] && PACKAGES+=(postgresql-15-tdigest postgresql-15-pgq3)
# The monitoring tests (tests/integration/test_monitoring_*.sh) run these by hand on loopback ports.
MONITORING_PACKAGES=(prometheus prometheus-postgres-exporter prometheus-alertmanager)
[ "${WITH_MONITORING_PACKAGES:-0}" = 1 ] && PACKAGES+=("${MONITORING_PACKAGES[@]}")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
  # Where systemd runs, the packages start their services; the tests run their own copies.
  if [ -d /run/systemd/system ]; then
    for p in "${missing[@]}"; do
      if [[ " ${MONITORING_PACKAGES[*]} " == *" $p "* ]]; then systemctl disable --now "$p" >/dev/null 2>&1 || true; fi
    done
  fi
fi

# pgspot (PyPI) lints the install script in `make test-security`.
if ! python3 -c "import pgspot" 2>/dev/null; then
  say "installing pgspot"
  python3 -m pip install --quiet pgspot==0.9.4 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages pgspot==0.9.4
fi

# Debian's server package starts a cluster on 5432; the project's clusters never use it.
if ! cargo pgrx --version 2>/dev/null | grep -q '0\.18\.0'; then
  say "installing cargo-pgrx 0.18.0 (about 10 minutes, once)"
  cargo install cargo-pgrx --version 0.18.0 --locked
fi

if ! grep -qs '^pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  say "cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi
