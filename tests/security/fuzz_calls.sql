-- Calls every function of pg_runbook with edge values in each argument (NULL, empty, negative,
-- huge, NaN, infinity, crafted bytes, OIDs of nothing, deep jsonb, ...), one argument at a time
-- while the others keep an ordinary value. Bad input must give a clear error: any internal error
-- (XX000) is collected, and the run raises at the end naming every call that gave one. A crashed
-- backend ends the run (and the calling script fails on it).
CREATE TEMP TABLE fuzz_values (typ regtype, val text);
INSERT INTO fuzz_values VALUES
  ('text', $$'x'$$), ('text', 'NULL'), ('text', $$''$$), ('text', $$'orders'$$),
  ('text', $$'"Odd ""Name"".x'$$), ('text', $$'a.b.c.d'$$), ('text', $$repeat('a', 100000)$$),
  ('text', $$'SELECT 1'$$), ('text', $$'); DROP TABLE orders; --'$$), ('text', $$'pg_runbook.lock_timeout'$$),
  ('integer', '1'), ('integer', 'NULL'), ('integer', '0'), ('integer', '-1'),
  ('integer', '2147483647'), ('integer', '-2147483648'),
  ('bigint', '1'), ('bigint', 'NULL'), ('bigint', '-1'), ('bigint', '9223372036854775807'),
  ('double precision', '1'), ('double precision', 'NULL'), ('double precision', $$'NaN'$$),
  ('double precision', $$'Infinity'$$), ('double precision', $$'-Infinity'$$), ('double precision', '-1'),
  ('double precision', '1e308'),
  ('boolean', 'true'), ('boolean', 'NULL'), ('boolean', 'false'),
  ('interval', $$'1 hour'$$), ('interval', 'NULL'), ('interval', $$'0'$$), ('interval', $$'-1 hour'$$),
  ('interval', $$'178000000 years'$$), ('interval', $$'1 microsecond'$$),
  ('timestamp with time zone', 'now()'), ('timestamp with time zone', 'NULL'),
  ('timestamp with time zone', $$'infinity'$$), ('timestamp with time zone', $$'-infinity'$$),
  ('timestamp with time zone', $$'4713-01-01 BC'$$),
  ('date', 'current_date'), ('date', 'NULL'), ('date', $$'infinity'$$), ('date', $$'-infinity'$$),
  ('jsonb', $${}$$ || '::jsonb'), ('jsonb', 'NULL'), ('jsonb', $$'null'$$), ('jsonb', $$'[]'$$),
  ('jsonb', $$'1e400'$$), ('jsonb', $$'"x"'$$), ('jsonb', $$'{"indexes": [1, null, {}], "tables": "x"}'$$),
  ('jsonb', $$'[{"endpoint": null, "duration_ms": "NaN", "status_code": 99999999999}]'$$),
  ('jsonb', $$repeat('[', 300) || repeat(']', 300)$$),
  ('bytea', $$request_sketch(g, 200, false)$$), ('bytea', 'NULL'), ('bytea', $$'\x'$$),
  ('bytea', $$'\x00'$$), ('bytea', $$'\x01'$$), ('bytea', $$'\x01ffffffffffffffffffffffffffffffff'$$),
  ('bytea', $$'\x01000000000000000000000000000000000000000000000000000000000000000000'$$),
  ('bytea', $$decode(repeat('ff', 4096), 'hex')$$), ('bytea', $$decode(repeat('01', 257), 'hex')$$),
  ('regclass', $$'orders'::regclass$$), ('regclass', 'NULL'), ('regclass', '0::oid::regclass'),
  ('regclass', '4294967295::oid::regclass'), ('regclass', $$'pg_class'::regclass$$),
  ('text[]', $${t}$$ || '::text[]'), ('text[]', 'NULL'), ('text[]', $$'{}'$$), ('text[]', $$'{NULL}'$$),
  ('text[]', $$'{""}'$$);

CREATE TEMP TABLE fuzz_internal (call text, sqlstate text, message text);

DO $fuzz$
DECLARE
  f record;
  i int;
  v record;
  args text[];
  call text;
  state text;
  msg text;
  calls int := 0;
BEGIN
  FOR f IN
    SELECT p.oid, n.nspname, p.proname, p.prokind, p.proargtypes::regtype[] AS types, p.proretset
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_runbook'
    WHERE p.prokind IN ('f', 'a')
      AND p.prorettype <> 'trigger'::regtype AND p.prorettype <> 'internal'::regtype
      AND NOT 'internal'::regtype = ANY (p.proargtypes::regtype[])
    ORDER BY p.proname
  LOOP
    FOR i IN 0 .. coalesce(array_length(f.types, 1), 0) LOOP
      FOR v IN
        SELECT val FROM fuzz_values WHERE i > 0 AND typ = f.types[i]
        UNION ALL SELECT NULL WHERE i = 0
      LOOP
        -- every argument its ordinary value (the first of its type), argument i the edge value
        SELECT array_agg(coalesce(
                 CASE WHEN k = i THEN v.val END,
                 (SELECT fv.val FROM fuzz_values fv WHERE fv.typ = t.typ LIMIT 1),
                 'NULL') ORDER BY k)
          INTO args
          FROM unnest(f.types) WITH ORDINALITY AS t(typ, k);
        call := format('SELECT %s FROM (SELECT %I.%I(%s) AS r FROM generate_series(1, 20) g LIMIT 1) s',
                       CASE WHEN f.proretset THEN 'count(*)' ELSE 'r IS NULL' END,
                       f.nspname, f.proname, coalesce(array_to_string(args, ', '), ''));
        IF f.prokind = 'a' THEN
          call := format('SELECT %I.%I(%s) IS NULL FROM generate_series(1, 20) g', f.nspname, f.proname,
                         coalesce(array_to_string(args, ', '), ''));
        ELSIF f.proretset THEN
          call := format('SELECT count(*) FROM %I.%I(%s)', f.nspname, f.proname,
                         coalesce(array_to_string(
                           (SELECT array_agg(replace(a, 'request_sketch(g, 200, false)',
                                   '(SELECT request_sketch(g, 200, false) FROM generate_series(1, 20) g)'))
                            FROM unnest(args) a), ', '), ''));
        END IF;
        calls := calls + 1;
        BEGIN
          EXECUTE call;
        EXCEPTION WHEN OTHERS OR assert_failure THEN
          GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
          IF state IN ('XX000', 'XX001', 'XX002') THEN
            INSERT INTO fuzz_internal VALUES (call, state, msg);
          END IF;
        END;
      END LOOP;
    END LOOP;
  END LOOP;
  RAISE NOTICE 'fuzz: % calls', calls;
END
$fuzz$;

SELECT left(call, 160) AS call, sqlstate, left(message, 200) AS message FROM fuzz_internal;
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM fuzz_internal) THEN
    RAISE EXCEPTION 'fuzz: % calls raised an internal error', (SELECT count(*) FROM fuzz_internal);
  END IF;
END $$;
