-- Bad input that used to reach an internal error (XX000) or be accepted as nonsense: each now gets
-- a clear error with a proper SQLSTATE, naming the argument, and changes nothing.

-- An OID that names no relation, passed as a regclass: 42P01.
SELECT regress.error_of($$SELECT cache_invalidate_on_change(0::oid::regclass, '{t}')$$);
SELECT regress.error_of($$SELECT cache_invalidate_off(4294967295::oid::regclass)$$);
SELECT regress.error_of($$SELECT * FROM drop_old_partitions(1, 0::oid::regclass)$$);

-- jsonb that serde cannot hold, given to a function that reads it: 54001 and 22023, not a panic.
SELECT regress.error_of(format($$SELECT expect_migration('deep', %L)$$,
                               repeat('[', 200) || repeat(']', 200)));
SELECT regress.error_of($$SELECT expect_migration('big', '{"tables": [1e400]}')$$);
SELECT count(*) AS nothing_registered FROM migration_expectations WHERE migration IN ('deep', 'big');

-- An infinite or NaN duration in a sketch is refused at once (it would ask for gigabytes of bins).
SELECT regress.error_of($$SELECT request_sketch(d, 200, false) FROM (VALUES (1.0), ('Infinity')) v(d)$$);
SELECT regress.error_of($$SELECT request_sketch(d, 200, false) FROM (VALUES ('NaN'::float8)) v(d)$$);
SELECT regress.error_of($$SELECT request_rollup(t, '/x', 1.0, 200, NULL) FROM (VALUES ('infinity'::timestamptz)) v(t)$$);

-- Crafted sketch bytes: 22023 naming the sketch.
SELECT regress.error_of($$SELECT sketch_quantile('\x01ffffffffffffffffffffffffffffffff', 0.5)$$);
SELECT regress.error_of($$SELECT * FROM sketch_stats('\x00')$$);
SELECT regress.error_of($$SELECT sketch_merge('\x01', '\x01')$$);

-- Infinite times: a request in the year 294276, a rollback check that judges nothing.
SELECT regress.error_of($$SELECT record_request('/x', 1, 200, at => 'infinity')$$);
SELECT regress.error_of($$SELECT record_requests('[{"endpoint": "/x", "duration_ms": 1, "status_code": 200, "at": "-infinity"}]')$$);
SELECT count(*) AS nothing_recorded FROM performance_metrics WHERE created_at IN ('infinity', '-infinity');
SELECT regress.error_of($$SELECT * FROM assert_no_rollback(as_of => 'infinity')$$);
SELECT regress.error_of($$SELECT * FROM should_rollback(as_of => '-infinity')$$);
SELECT regress.error_of($$SELECT * FROM check_slo_compliance(as_of => 'infinity')$$);
