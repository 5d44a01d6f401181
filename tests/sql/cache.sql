-- The query cache and its invalidation queue, drained by hand (the worker is not pointed here).
\set VERBOSITY terse
BEGIN;
CREATE TABLE cache_src (id int PRIMARY KEY, name text);
INSERT INTO cache_src VALUES (1, 'a'), (2, 'b');

-- put, get, miss
SELECT cache_put('greeting', '{"hello": "world"}', '1 hour', '{greetings}');
SELECT cache_get('greeting');
SELECT cache_get('missing') IS NULL AS missing_is_null;

-- cached_query stores the rows as a jsonb array, with the query text
SELECT cached_query('src', 'SELECT id, name FROM cache_src ORDER BY id;', '1 hour', '{src}');
SELECT cache_key, query_sql, tags, hits FROM query_cache ORDER BY cache_key;

-- a watched table enqueues one event per tag per statement, not per row
SELECT cache_invalidate_on_change('cache_src', '{src,src_all}');
UPDATE cache_src SET name = upper(name);
SELECT cache_key, tag, reason FROM cache_invalidation_queue ORDER BY id;
SELECT invalidate_cache('greeting') > 0 AS enqueued;
SELECT drain_cache_invalidation_queue();
SELECT count(*) AS entries_left FROM query_cache;
SELECT cache_key, query_sql FROM query_cache_stale;

-- the invalidated query is still known, and warming recomputes it
SELECT warm_cache_top_queries(5);
SELECT cache_key, result FROM query_cache;

-- malformed events are moved aside
INSERT INTO cache_invalidation_queue (cache_key, tag) VALUES ('x', 'y');
SELECT drain_cache_invalidation_queue(10, 1);
SELECT cache_key, tag, problem FROM cache_invalidation_rejected;

SELECT cache_invalidate_off('cache_src'), cache_invalidate_off('cache_src');
SELECT entries, expired_entries, queue_depth FROM cache_stats();
SELECT cache_put('old', '1', '1 hour');
UPDATE query_cache SET expires_at = now() - interval '1 minute' WHERE cache_key = 'old';
SELECT cache_get('old') IS NULL AS expired_is_null;
SELECT clean_expired_cache();

-- bad input: 22023, nothing changed
SELECT regress.error_of($$SELECT cache_put(NULL, '1', '1 hour')$$);
SELECT regress.error_of($$SELECT cache_put('k', '1', '0 seconds')$$);
SELECT regress.error_of($$SELECT cache_put('k', '1', '1 hour', '{NULL}')$$);
SELECT regress.error_of($$SELECT cache_get('')$$);
SELECT regress.error_of($$SELECT cached_query('k', 'DELETE FROM cache_src', '1 hour')$$);
SELECT regress.error_of($$SELECT cached_query('k', 'SELECT 1; SELECT 2', '1 hour')$$);
SELECT regress.error_of($$SELECT cached_query('k', 'SELECT * INTO t FROM cache_src', '1 hour')$$);
SELECT regress.error_of($$SELECT cached_query('k', 'SELECT * FROM cache_src FOR UPDATE', '1 hour')$$);
SELECT regress.error_of($$SELECT cached_query('k', 'WITH d AS (DELETE FROM cache_src RETURNING *) SELECT * FROM d', '1 hour')$$);
SELECT regress.error_of($$SELECT cached_query('k', 'SELEC 1', '1 hour')$$);
SELECT regress.error_of($$SELECT invalidate_cache_tag(NULL)$$);
SELECT regress.error_of($$SELECT drain_cache_invalidation_queue(0)$$);
SELECT regress.error_of($$SELECT drain_cache_invalidation_queue(10, -1)$$);
SELECT regress.error_of($$SELECT warm_cache_top_queries(-1)$$);
SELECT regress.error_of($$SELECT cache_invalidate_on_change('cache_src', '{}')$$);
SELECT regress.error_of($$SELECT cache_invalidate_on_change(NULL, '{a}')$$);
SELECT count(*) AS src_rows, (SELECT count(*) FROM query_cache WHERE cache_key = 'k') AS k_entries FROM cache_src;
ROLLBACK;

-- the extension works when created in its own schema
CREATE SCHEMA runbook_cache_test;
BEGIN;
DROP EXTENSION pg_runbook;
CREATE EXTENSION pg_runbook SCHEMA runbook_cache_test;
SELECT runbook_cache_test.cached_query('s', 'SELECT 42 AS answer', '1 hour', '{t}');
SELECT runbook_cache_test.invalidate_cache_tag('t') > 0 AS enqueued;
SELECT runbook_cache_test.drain_cache_invalidation_queue(100, 5);
ROLLBACK;

-- a burst of events for one tag is coalesced: the first batch (of one event) takes the others for
-- the same tag with it, and one invalidation serves them all; events for other tags wait their turn
BEGIN;
TRUNCATE cache_invalidation_queue;
SELECT cache_put('burst_entry', '1', '1 hour', '{burst}');
SELECT count(*) AS burst_entries_before FROM query_cache WHERE cache_key = 'burst_entry';
SELECT count(invalidate_cache_tag('burst')) AS burst_events FROM generate_series(1, 3);
SELECT invalidate_cache_tag('other') > 0 AS other_enqueued;
SELECT drain_cache_invalidation_queue(1, 0) AS processed_in_one_batch;
SELECT tag, count(*) AS still_queued FROM cache_invalidation_queue GROUP BY tag;
SELECT count(*) AS burst_entries_left FROM query_cache WHERE cache_key = 'burst_entry';
ROLLBACK;

-- a large tag is deleted in chunks of pg_runbook.drain_max_entries: its event stays queued until
-- the last chunk, and each batch says where the next one starts (NULL: the drain is over)
BEGIN;
TRUNCATE cache_invalidation_queue;
SELECT count(*) AS stored FROM (SELECT cache_put('big' || g, '1', '1 hour', '{big}') FROM generate_series(1, 150) g) x;
SELECT invalidate_cache_tag('big') > 0 AS enqueued;
SET LOCAL pg_runbook.drain_max_entries = 100;
SELECT events, next_after_id FROM drain_cache_invalidation_batch(10, 0);
SELECT count(*) AS big_left, (SELECT count(*) FROM cache_invalidation_queue) AS queued FROM query_cache WHERE tags @> '{big}';
SELECT events, next_after_id FROM drain_cache_invalidation_batch(10, 0);
SELECT count(*) AS big_left, (SELECT count(*) FROM cache_invalidation_queue) AS queued FROM query_cache WHERE tags @> '{big}';
SELECT regress.error_of($$SELECT * FROM drain_cache_invalidation_batch(0, 0)$$);
SELECT regress.error_of($$SELECT * FROM drain_cache_invalidation_batch(10, -1)$$);
SELECT regress.error_of($$SELECT * FROM drain_cache_invalidation_batch(10, NULL)$$);
ROLLBACK;

-- the drain procedure commits after every batch: outside a transaction block only
SELECT invalidate_cache('proc_key') > 0 AS enqueued;
CALL drain_cache_invalidation_queue_batches(100, 5);
CALL drain_cache_invalidation_queue_batches(100, -1);
BEGIN;
SELECT invalidate_cache('proc_key') > 0 AS enqueued;
CALL drain_cache_invalidation_queue_batches(100, 5);
ROLLBACK;
