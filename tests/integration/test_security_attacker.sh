#!/usr/bin/env bash
# The attacker suite (docs/security.md): ordinary roles plant objects in `public` and in their
# temporary schema, set their own settings and store their own text, then a superuser, an
# operator and the worker run pg_runbook. No planted object may ever run, no role may read or
# overwrite another's cache entries, and no role may change what the others are served.
#
# Every planted function and operator announces itself with a WARNING 'PWNED <current_user> via
# <what>' (a WARNING needs no write, so it shows even inside a read-only transaction); the suite
# fails on any such line in a client's output or in the server log.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db it_attack)
LOG=$RUN_DIR/integration/server.log
log_mark=$(wc -c < "$LOG")

psql -X -q -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DROP ROLE IF EXISTS attacker, op_attacker, victim;
CREATE ROLE attacker LOGIN;                         -- default rights, may create in public
CREATE ROLE op_attacker LOGIN IN ROLE runbook_operator;
CREATE ROLE victim LOGIN IN ROLE runbook_operator;
SQL

# as ROLE SQL...: one psql session as ROLE; stdout and stderr together, errors do not stop it.
as() { local role=$1; shift; psql -X -q -A -t -U "$role" -d "$DB" "$@" 2>&1; }
sup() { as postgres "$@"; }

sup -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
GRANT CREATE ON SCHEMA public TO attacker, op_attacker;
CREATE SCHEMA app;
CREATE TABLE app.orders (id int PRIMARY KEY, customer_id int, total numeric, created_at timestamptz DEFAULT now());
CREATE TABLE app.customers (id int PRIMARY KEY, name text);
ALTER TABLE app.orders ADD FOREIGN KEY (customer_id) REFERENCES app.customers;
INSERT INTO app.customers SELECT g, 'c' || g FROM generate_series(1, 20) g;
INSERT INTO app.orders SELECT g, g % 20 + 1, g * 1.5 FROM generate_series(1, 200) g;
CREATE INDEX orders_customer_idx ON app.orders (customer_id);
CREATE MATERIALIZED VIEW app.order_totals AS SELECT customer_id, sum(total) AS total FROM app.orders GROUP BY 1;
CREATE UNIQUE INDEX ON app.order_totals (customer_id);
CREATE TABLE app.events (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE app.events_old PARTITION OF app.events FOR VALUES FROM ('2020-01-01') TO ('2020-02-01');
CREATE TABLE app.secrets (s text);
INSERT INTO app.secrets VALUES ('the victim''s secret');
GRANT USAGE ON SCHEMA app TO victim, op_attacker;
GRANT SELECT ON app.secrets TO victim;
GRANT SELECT ON app.orders, app.customers TO op_attacker, victim;
SQL

echo "an ordinary role plants operators and functions in public"
as attacker -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE FUNCTION public.pwn(via text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING 'PWNED % via %', current_user, via; END $$;
CREATE FUNCTION public.p_eq_oid_regclass(oid, regclass) RETURNS bool LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('=(oid,regclass)'); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.p_eq_oid_regclass);
CREATE FUNCTION public.p_ne_oid_regclass(oid, regclass) RETURNS bool LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('<>(oid,regclass)'); RETURN $1 OPERATOR(pg_catalog.<>) $2::oid; END $$;
CREATE OPERATOR public.<> (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.p_ne_oid_regclass);
CREATE FUNCTION public.p_div(float8, numeric) RETURNS float8 LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('/(float8,numeric)'); RETURN $1 OPERATOR(pg_catalog./) $2::float8; END $$;
CREATE OPERATOR public./ (LEFTARG = float8, RIGHTARG = numeric, FUNCTION = public.p_div);
CREATE FUNCTION public.p_mul(float8, int) RETURNS float8 LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('*(float8,int)'); RETURN $1 OPERATOR(pg_catalog.*) $2::float8; END $$;
CREATE OPERATOR public.* (LEFTARG = float8, RIGHTARG = int, FUNCTION = public.p_mul);
CREATE FUNCTION public.p_contains(text[], text[]) RETURNS bool LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('@>(text[],text[])'); RETURN $1 OPERATOR(pg_catalog.@>) $2; END $$;
CREATE OPERATOR public.@> (LEFTARG = text[], RIGHTARG = text[], FUNCTION = public.p_contains);
CREATE FUNCTION public.p_eq_name_text(name, text) RETURNS bool LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('=(name,text)'); RETURN $1::text OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.p_eq_name_text);
CREATE FUNCTION public.quote_ident(name) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('quote_ident(name)'); RETURN pg_catalog.quote_ident($1::text); END $$;
CREATE FUNCTION public.date_trunc(text, date) RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('date_trunc(text,date)'); RETURN pg_catalog.date_trunc($1, $2::timestamptz); END $$;
CREATE FUNCTION public.round(float8, int) RETURNS numeric LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('round(float8,int)'); RETURN pg_catalog.round($1::numeric, $2); END $$;
CREATE FUNCTION public.left(name, int) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('left(name,int)'); RETURN pg_catalog.left($1::text, $2); END $$;
CREATE FUNCTION public.lower(name) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('lower(name)'); RETURN pg_catalog.lower($1::text); END $$;
CREATE FUNCTION public.array_to_string(integer[], text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('array_to_string(int[],text)'); RETURN pg_catalog.array_to_string($1, $2); END $$;
CREATE FUNCTION public.format(text, name) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('format(text,name)'); RETURN pg_catalog.format($1, $2::text); END $$;
CREATE FUNCTION public.regexp_replace(name, text, text, text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('regexp_replace(name,...)'); RETURN pg_catalog.regexp_replace($1::text, $2, $3, $4); END $$;
CREATE FUNCTION public.make_interval(secs float8) RETURNS interval LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.pwn('make_interval(float8)'); RETURN pg_catalog.make_interval(secs => $1); END $$;
SQL
planted=$(sup -c "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proowner = 'attacker'::regrole")
check_match "the attacker's objects are in place" "$planted" "^[1-9][0-9]+$"

# Every call a deploy runbook makes, with arguments where a function needs them.
calls() {
  cat <<'SQL'
SELECT * FROM preflight_checks();
SELECT * FROM assert_preflight();
SELECT health_check();
SELECT * FROM analyze_index_usage();
SELECT * FROM find_redundant_indexes();
SELECT * FROM find_unused_indexes();
SELECT * FROM find_missing_fk_indexes();
SELECT * FROM index_build_progress();
SELECT schema_baseline('attack', replace => true);
SELECT * FROM verify_migration_success();
SELECT expect_migration('m1', '{"indexes": ["app.orders_customer_idx"], "tables": ["app.orders"]}');
SELECT * FROM verify_migration('m1');
SELECT * FROM check_query_plan('SELECT * FROM app.orders WHERE id = 1');
SELECT * FROM schema_diff('attack');
SELECT * FROM rollback_ddl('attack');
SELECT * FROM verify_materialized_view_indexes();
SELECT * FROM refresh_materialized_views_staggered(stagger => '0');
SELECT * FROM refresh_materialized_views();
SELECT * FROM refresh_status();
SELECT prune_mv_refresh_log();
SELECT record_request('/checkout', 12.5, 200);
SELECT record_requests('[{"endpoint": "/pay", "duration_ms": 3, "status_code": 500}]');
SELECT * FROM rollup_metrics();
SELECT * FROM check_slo_compliance('15 minutes');
SELECT * FROM should_rollback();
SELECT * FROM slo_error_budget();
SELECT cache_put('k1', '{"a": 1}', '1 hour', '{t1}');
SELECT cache_get('k1');
SELECT cached_query('k2', 'SELECT id FROM app.orders WHERE id < 3', '1 hour', '{t1}');
SELECT cache_invalidate_on_change('app.orders', '{t1}');
UPDATE app.orders SET total = total WHERE id = 1;
SELECT invalidate_cache('k1');
SELECT invalidate_cache_tag('t1');
SELECT drain_cache_invalidation_queue();
SELECT warm_cache_top_queries(5);
SELECT clean_expired_cache();
SELECT * FROM cache_stats();
SELECT cache_invalidate_off('app.orders');
SELECT * FROM worker_status();
SELECT * FROM check_data_integrity();
SELECT * FROM validate_security_configuration();
SELECT * FROM analyze_partition_distribution();
SELECT * FROM drop_old_partitions(1200, 'app.events', dry_run => true);
SELECT * FROM apply_data_retention_policies();
SELECT generate_compliance_report();
SELECT sketch_quantile(request_sketch(g, 200, false), 0.99) FROM generate_series(1, 100) g;
SQL
}

echo "a superuser runs every step with the default search_path, then with public first"
out=$(calls | sup -v ON_ERROR_STOP=0)
out2=$( (echo "SET search_path = public, pg_catalog;"; calls) | sup -v ON_ERROR_STOP=0)
check "no planted object ran (default search_path)" "$(grep -c PWNED <<<"$out")" "0"
check "no planted object ran (public first)" "$(grep -c PWNED <<<"$out2")" "0"
grep PWNED <<<"$out$out2" | sort | uniq -c | head -20 || true
check "the steps themselves ran (no permission or internal error)" \
  "$(grep -E 'ERROR: +(permission denied|.*internal)|XX000' <<<"$out$out2" | head -3)" ""

echo "an operator plants the same in its temporary schema and points its search_path there"
temp_out=$( { cat <<'SQL'
SELECT 1 FROM pg_catalog.pg_class LIMIT 0;
CREATE FUNCTION pg_temp.pwn(via text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN RAISE WARNING 'PWNED % via %', current_user, via; END $$;
CREATE FUNCTION pg_temp.p_div(float8, numeric) RETURNS float8 LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_temp.pwn('pg_temp /(float8,numeric)'); RETURN $1 OPERATOR(pg_catalog./) $2::float8; END $$;
CREATE OPERATOR pg_temp./ (LEFTARG = float8, RIGHTARG = numeric, FUNCTION = pg_temp.p_div);
CREATE FUNCTION pg_temp.p_mul(float8, int) RETURNS float8 LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_temp.pwn('pg_temp *(float8,int)'); RETURN $1 OPERATOR(pg_catalog.*) $2::float8; END $$;
CREATE OPERATOR pg_temp.* (LEFTARG = float8, RIGHTARG = int, FUNCTION = pg_temp.p_mul);
CREATE FUNCTION pg_temp.p_eq_oid_regclass(oid, regclass) RETURNS bool LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_temp.pwn('pg_temp =(oid,regclass)'); RETURN $1 OPERATOR(pg_catalog.=) $2::oid; END $$;
CREATE OPERATOR pg_temp.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = pg_temp.p_eq_oid_regclass);
SELECT pg_catalog.set_config('search_path',
  (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = pg_catalog.pg_my_temp_schema()) || ', public, pg_catalog', false);
SELECT * FROM refresh_materialized_views_staggered(stagger => '0');
SELECT record_request('/a', 1, 200);
SELECT * FROM rollup_metrics();
SELECT cached_query('op1', 'SELECT 1 AS one', '1 hour');
SELECT * FROM check_query_plan('SELECT 1');
SELECT schema_baseline('op', replace => true);
SELECT * FROM preflight_checks();
SELECT warm_cache_top_queries(5);
SQL
} | as op_attacker -v ON_ERROR_STOP=0)
check "no object planted in the operator's temporary schema ran" "$(grep -c PWNED <<<"$temp_out")" "0"

echo "cache entries belong to the role that stored them"
as victim -c "SELECT cached_query('secret', 'SELECT s FROM app.secrets', '1 hour')" >/dev/null
check "the victim reads its own entry" "$(as victim -c "SELECT cache_get('secret')")" '[{"s": "the victim'"'"'s secret"}]'
check "another operator gets no entry for the victim's key" "$(as op_attacker -c "SELECT cache_get('secret') IS NULL")" "t"
check "and is refused when it would overwrite it (42501)" \
  "$(as op_attacker -c "\\set VERBOSITY sqlstate" -c "SELECT cache_put('secret', '\"mine\"', '1 hour')")" "ERROR:  42501"
check "its cached_query under the same key returns its own rows, uncached" \
  "$(as op_attacker -c "SELECT cached_query('secret', 'SELECT 1 AS one', '1 hour')")" '[{"one": 1}]'
check "the victim's entry is unchanged" "$(as victim -c "SELECT cache_get('secret')")" '[{"s": "the victim'"'"'s secret"}]'
check "no role reads the cache table itself" \
  "$(as op_attacker -c "\\set VERBOSITY sqlstate" -c "SELECT count(*) FROM query_cache")" "ERROR:  42501"
check "nor writes stored query text into it" \
  "$(as op_attacker -c "\\set VERBOSITY sqlstate" -c "UPDATE query_cache SET query_sql = 'SELECT 1'")" "ERROR:  42501"

echo "an application role writing a watched table needs no right on the queue"
psql -X -q -d postgres -c "DROP ROLE IF EXISTS app_writer" -c "CREATE ROLE app_writer LOGIN" >/dev/null
sup -c "GRANT USAGE ON SCHEMA app TO app_writer" -c "GRANT SELECT, UPDATE ON app.customers TO app_writer" \
    -c "SELECT cache_invalidate_on_change('app.customers', '{customers}')" >/dev/null
# Every enqueued event is noted in app.enqueued (the worker may drain the queue at once).
sup -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE app.enqueued (tag text);
CREATE FUNCTION app.note_enqueued() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN INSERT INTO app.enqueued SELECT tag FROM added; RETURN NULL; END $$;
CREATE TRIGGER note_enqueued AFTER INSERT ON cache_invalidation_queue
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION app.note_enqueued();
SQL
check "its UPDATE succeeds" "$(as app_writer -c "UPDATE app.customers SET name = name WHERE id = 1")" ""
check "and enqueues the invalidation" "$(sup -c "SELECT count(*) FROM app.enqueued WHERE tag = 'customers'")" "1"
check "yet it may not write the queue itself" \
  "$(as app_writer -c "\\set VERBOSITY sqlstate" -c "INSERT INTO cache_invalidation_queue (tag) VALUES ('x')")" "ERROR:  42501"

echo "warming runs a stored query as the role that stored it, not as the warmer"
as op_attacker -c "SELECT cached_query('who', 'SELECT current_user::text AS who', '1 hour', '{w}')" >/dev/null
sup -c "SELECT invalidate_cache_tag('w')" -c "SELECT drain_cache_invalidation_queue()" -c "SELECT warm_cache_top_queries(50)" >/dev/null
check "the warmed result was computed as op_attacker" \
  "$(as op_attacker -c "SELECT cache_get('who')")" '[{"who": "op_attacker"}]'

echo "read-only means read-only"
sup -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE TABLE app.written (x int);
GRANT INSERT, SELECT ON app.written TO op_attacker;
CREATE FUNCTION app.writer() RETURNS int LANGUAGE sql AS 'INSERT INTO app.written VALUES (1) RETURNING 1';
GRANT USAGE ON SCHEMA app TO op_attacker;
SQL
w() { as op_attacker -c "\\set VERBOSITY sqlstate" -c "$1"; }
check "a function that writes is stopped (25006 read-only)" \
  "$(w "SELECT cached_query('w1', 'SELECT app.writer()', '1 hour')")" "ERROR:  25006"
check "a row lock anywhere in the tree is refused (22023)" \
  "$(w "SELECT cached_query('w2', 'SELECT * FROM (SELECT * FROM app.orders FOR UPDATE) s', '1 hour')")" "ERROR:  22023"
check "the query cannot switch read-only off" \
  "$(w "SELECT cached_query('w3', \$\$SELECT pg_catalog.set_config('transaction_read_only', 'off', true)\$\$, '1 hour')")" "ERROR:  25001"
check "nothing was written" "$(sup -c "SELECT count(*) FROM app.written")" "0"
check "a session advisory lock is refused (22023) ..." \
  "$(w "SELECT * FROM check_query_plan('SELECT pg_advisory_lock(4242)')")" "ERROR:  22023"
check "... and not left held" \
  "$(as op_attacker -c "SELECT * FROM check_query_plan('SELECT pg_advisory_lock(4243)')" -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()" | tail -1)" "0"
los=$(sup -c "SELECT count(*) FROM pg_largeobject_metadata")
sup -c "SELECT * FROM check_query_plan(\$\$SELECT lo_import('/etc/hostname')\$\$)" >/dev/null
check "a large object created inside check_query_plan does not survive it" \
  "$(sup -c "SELECT count(*) FROM pg_largeobject_metadata")" "$los"

echo "no role changes the health result the others are served"
as op_attacker -c "ALTER ROLE op_attacker SET pg_runbook.connections_fail_pct = 0" >/dev/null 2>&1 || true
sup -c "GRANT runbook_reader TO attacker" >/dev/null
poisoned=$(as attacker -c "SET pg_runbook.connections_warn_pct = 0" -c "SET pg_runbook.connections_fail_pct = 0" \
  -c "SET pg_runbook.health_cache_ttl = 0" -c "SELECT h->>'status' || '|' || (h->>'cache') FROM health_check() h")
check "the attacker's own answer is unhealthy and private" "$poisoned" "unhealthy|private"
served=$(as victim -c "SELECT h->'checks'->>'connections' || '|' || (h->>'cache') FROM health_check() h" 2>&1)
check "another session is served the shared answer at server thresholds" "$served" "PASS|shared"

echo "numbers and nesting pass through the cache exactly"
check "a 30-digit number is unchanged" \
  "$(as victim -c "SELECT cache_put('n', '123456789012345678901234567890', '1 hour')" -c "SELECT cache_get('n')" | tail -1)" \
  "123456789012345678901234567890"
check "1e400 is unchanged" \
  "$(as victim -c "SELECT cached_query('big', 'SELECT 1e400::numeric AS n', '1 hour')::text = (SELECT jsonb_agg(jsonb_build_object('n', 1e400::numeric)))::text")" "t"
deep=$(printf '[%.0s' $(seq 200))$(printf ']%.0s' $(seq 200))
check "an array nested 200 deep is unchanged" \
  "$(as victim -c "SELECT cache_put('deep', '$deep', '1 hour')" -c "SELECT cache_get('deep') = '$deep'::jsonb" | tail -1)" "t"

echo "a locked table of the extension gives 55P03 after pg_runbook.lock_timeout, not a wait"
lock_wait() { # TABLE SQL: another session holds TABLE; SQL must fail with 55P03
  psql -X -q -d "$DB" -c "BEGIN; LOCK $1 IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT;" >/dev/null 2>&1 &
  local holder=$!
  wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation OPERATOR(pg_catalog.=) '$1'::regclass AND mode = 'AccessExclusiveLock' AND granted)" 5
  local got; got=$(sup -c "SET statement_timeout = '6s'" -c "SET pg_runbook.lock_timeout = '200ms'" -c "\\set VERBOSITY sqlstate" -c "$2" | tail -1 || true)
  kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true
  check "$2 while $1 is locked" "$got" "ERROR:  55P03"
}
lock_wait query_cache "SELECT cache_get('k1')"
lock_wait query_cache "SELECT cache_put('k9', '1', '1 hour')"
lock_wait performance_analytics_5min "SELECT * FROM check_slo_compliance('15 minutes')"
lock_wait rollback_triggers "SELECT * FROM should_rollback()"
lock_wait schema_baselines "SELECT schema_baseline('locked')"
lock_wait mv_refresh_runs "SELECT * FROM refresh_status()"

echo "and in all of the above, nothing planted ran in any backend or worker (server log)"
sleep 1
check "no PWNED line in the server log" "$(tail -c +"$((log_mark + 1))" "$LOG" | grep -c PWNED || true)" "0"

sup -c "DROP OWNED BY attacker, op_attacker, victim, app_writer CASCADE" >/dev/null
psql -X -q -d postgres -c "DROP DATABASE $DB WITH (FORCE)" -c "DROP ROLE attacker, op_attacker, victim, app_writer" >/dev/null 2>&1
finish
