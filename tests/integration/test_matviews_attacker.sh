#!/usr/bin/env bash
# The refresh functions tried as an attacker would (issue 14): an ordinary role, given only
# runbook_operator, plants operators and functions in public, in its own schema put first on its
# role-level search_path, and in pg_temp, then calls every refresh function. None of the planted
# objects may run (each would record itself in audit.pwned), the refreshes run as that role
# (views it does not own are skipped, not failed: no rollback trigger fires), and it cannot
# shorten the log's retention for itself.
. "$(dirname "$0")/lib.sh"

DB=$(fresh_db mv_attack)
q postgres "DROP ROLE IF EXISTS mallory; DROP ROLE IF EXISTS trudy;
            CREATE ROLE mallory LOGIN; CREATE ROLE trudy LOGIN" >/dev/null
q "$DB" "
CREATE SCHEMA audit;
CREATE TABLE audit.pwned (who text, session_who text, backend text, what text);
GRANT USAGE ON SCHEMA audit TO PUBLIC;
GRANT INSERT ON audit.pwned TO PUBLIC;
-- An older database's public schema, where every role may create.
GRANT CREATE ON SCHEMA public TO PUBLIC;
GRANT runbook_operator TO mallory;
GRANT CREATE ON DATABASE $DB TO mallory;
CREATE SCHEMA analytics;
GRANT USAGE, CREATE ON SCHEMA analytics TO mallory;
CREATE TABLE analytics.events AS SELECT g AS id, g % 7 AS k FROM generate_series(1, 500) g;
GRANT SELECT ON analytics.events TO mallory;
CREATE MATERIALIZED VIEW analytics.owners_view AS SELECT k, count(*) AS n FROM analytics.events GROUP BY k;
CREATE UNIQUE INDEX ON analytics.owners_view (k);" >/dev/null
q "$DB" "SET ROLE mallory;
CREATE MATERIALIZED VIEW analytics.mallorys_view AS SELECT k, count(*) AS n FROM analytics.events GROUP BY k;
CREATE UNIQUE INDEX ON analytics.mallorys_view (k);" >/dev/null

# The planted objects: each records who ran it, in which kind of backend, and returns what the
# built-in would, so a refresh that used one would otherwise look normal.
plant() { # plant SCHEMA
  local s=$1
  cat <<SQL
CREATE FUNCTION $s.mark(what text) RETURNS void LANGUAGE sql AS
  \$\$ INSERT INTO audit.pwned SELECT current_user, session_user, backend_type, what
       FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid() \$\$;
CREATE FUNCTION $s.div(float8, numeric) RETURNS float8 LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM $s.mark('/(float8, numeric)'); RETURN \$1 OPERATOR(pg_catalog./) \$2::float8; END \$\$;
CREATE OPERATOR $s./ (LEFTARG = float8, RIGHTARG = numeric, FUNCTION = $s.div);
CREATE FUNCTION $s.eq(oid, oid) RETURNS bool LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM $s.mark('=(oid, oid)'); RETURN \$1 OPERATOR(pg_catalog.=) \$2; END \$\$;
CREATE OPERATOR $s.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = $s.eq);
CREATE FUNCTION $s.eqr(oid, regclass) RETURNS bool LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM $s.mark('=(oid, regclass)'); RETURN \$1 OPERATOR(pg_catalog.=) \$2::oid; END \$\$;
CREATE OPERATOR $s.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = $s.eqr);
CREATE FUNCTION $s.like(name, text) RETURNS bool LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM $s.mark('~~(name, text)'); RETURN \$1::text OPERATOR(pg_catalog.~~) \$2; END \$\$;
CREATE OPERATOR $s.~~ (LEFTARG = name, RIGHTARG = text, FUNCTION = $s.like);
CREATE FUNCTION $s.minus(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM $s.mark('-(timestamptz, interval)'); RETURN \$1 OPERATOR(pg_catalog.-) \$2; END \$\$;
CREATE OPERATOR $s.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = $s.minus);
CREATE FUNCTION $s.now() RETURNS timestamptz LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM $s.mark('now()'); RETURN pg_catalog.now(); END \$\$;
CREATE FUNCTION $s.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM $s.mark('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END \$\$;
CREATE FUNCTION $s.count(anyelement) RETURNS bigint LANGUAGE plpgsql AS
  \$\$ BEGIN PERFORM $s.mark('count'); RETURN 0; END \$\$;
SQL
}

q "$DB" "SET ROLE mallory; $(plant public)" >/dev/null
q "$DB" "SET ROLE mallory; CREATE SCHEMA mallory_s; $(plant mallory_s)" >/dev/null
# Mallory's role-level search_path puts her schema first, ahead of pg_catalog: a process that
# connects as her and takes role settings resolves every unqualified name to her objects.
q "$DB" "ALTER ROLE mallory IN DATABASE $DB SET search_path = mallory_s, public, pg_catalog" >/dev/null
check "the planted operators would run where the search_path lets them (the test can fail)" \
  "$(psql -X -q -At -d "$DB" -U mallory -c "SELECT 1.5::float8 / 2.0")
$(q "$DB" "SELECT who || ': ' || what FROM audit.pwned")" \
  "0.75
mallory: /(float8, numeric)"
q "$DB" "TRUNCATE audit.pwned" >/dev/null

as_mallory() { # as_mallory SQL: runs SQL in a session of mallory's, with objects planted in pg_temp too
  psql -X -q -At -d "$DB" -U mallory -v ON_ERROR_STOP=1 \
    -c "$(plant pg_temp)" \
    -c "SET search_path = pg_temp, mallory_s, public, pg_catalog" \
    -c "SET client_min_messages = warning" -c "$1"
}

echo "an operator role refreshes with its own rights only"
check "the staggered refresh skips the view mallory does not own, refreshes hers" \
  "$(as_mallory "SELECT matview || '=' || status || coalesce(': ' || error, '') FROM refresh_materialized_views_staggered(schema_pattern => 'analytics')")" \
  "analytics.mallorys_view=success
analytics.owners_view=skipped: role mallory may not refresh it: only its owner postgres and members of that role may"
check "refresh_materialized_views() does the same" \
  "$(as_mallory "SELECT string_agg(matview || '=' || status, ' ') FROM refresh_materialized_views() WHERE matview LIKE 'analytics.%'")" \
  "analytics.mallorys_view=success analytics.owners_view=skipped"
check "refresh_analytics_views_concurrent() does the same on two workers" \
  "$(as_mallory "SELECT string_agg(coalesce(matview, 'run') || '=' || status, ' ') FROM refresh_analytics_views_concurrent(schema_pattern => 'analytics', max_parallel => 2)")" \
  "analytics.mallorys_view=success analytics.owners_view=skipped run=PASS"
check "no planted operator or function ran, in the caller or in a worker" \
  "$(q "$DB" "SELECT coalesce(string_agg(DISTINCT who || ' in ' || backend || ': ' || what, '; '), 'none') FROM audit.pwned")" "none"
check "the log records the refreshes as mallory's" \
  "$(q "$DB" "SELECT string_agg(DISTINCT refreshed_by, ',') FROM mv_refresh_log")" "mallory"
check "and no failure: the rollback trigger's count of failed refreshes stays 0" \
  "$(q "$DB" "SELECT count(*) FROM mv_refresh_log WHERE status = 'failed'")" "0"
check "the owner's view was not refreshed by the attempts" \
  "$(q "$DB" "SELECT count(*) FROM mv_refresh_log WHERE matview = 'owners_view' AND status <> 'skipped'")" "0"

echo "roles outside the privilege model"
check_match "a role without runbook_operator cannot call a refresh" \
  "$(psql -X -q -At -d "$DB" -U trudy -c "SELECT count(*) FROM refresh_materialized_views()" 2>&1)" \
  "permission denied for function refresh_materialized_views"
check_match "nor the parallel one" \
  "$(psql -X -q -At -d "$DB" -U trudy -c "SELECT count(*) FROM refresh_analytics_views_concurrent()" 2>&1)" \
  "permission denied for function refresh_analytics_views_concurrent"

echo "retention follows server settings only"
rows=$(q "$DB" "SELECT count(*) FROM mv_refresh_log")
check_match "a role cannot set the retention for itself" \
  "$(psql -X -q -At -d "$DB" -U mallory -c "ALTER ROLE mallory SET pg_runbook.refresh_log_retention = '1s'" 2>&1)" \
  "permission denied to set parameter \"pg_runbook.refresh_log_retention\""
check_match "nor in its session" \
  "$(psql -X -q -At -d "$DB" -U mallory -c "SET pg_runbook.refresh_log_retention = '1s'" 2>&1)" \
  "permission denied to set parameter \"pg_runbook.refresh_log_retention\""
sleep 1.2
as_mallory "SELECT count(*) FROM refresh_materialized_views_staggered(schema_pattern => 'analytics')" >/dev/null
check "a later refresh by that role prunes nothing of the log" \
  "$(q "$DB" "SELECT count(*) >= $rows FROM mv_refresh_log")" "t"
check "still nothing planted ran" "$(q "$DB" "SELECT count(*) FROM audit.pwned")" "0"

q "$DB" "ALTER ROLE mallory IN DATABASE $DB RESET search_path" >/dev/null
finish
