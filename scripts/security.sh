#!/usr/bin/env bash
# The security layer beside the attacker suite (tests/integration/test_security_attacker.sh):
# pgspot over the installed extension script, with every remaining finding justified in
# tests/security/pgspot-exceptions.txt, and a sqlsmith run that fails on a crashed backend or an
# internal error raised inside pg_runbook.
#   scripts/security.sh            both
#   SQLSMITH_QUERIES=500 scripts/security.sh
. "$(dirname "$0")/lib.sh"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
script="$("$PG_CONFIG" --sharedir)/extension/pg_runbook--$version.sql"
say "pgspot: $script"
python3 "$REPO/tests/security/pgspot_lint.py" "$script" "$REPO/tests/security/pgspot-exceptions.txt"

"$REPO/tests/security/sqlsmith.sh" "${SQLSMITH_QUERIES:-3000}"
