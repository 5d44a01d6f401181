-- pg_runbook demo: the query cache, its invalidation queue and the worker.
\set ON_ERROR_STOP on
DROP SCHEMA IF EXISTS demo_cache CASCADE;
CREATE SCHEMA demo_cache;
CREATE TABLE demo_cache.products (id int PRIMARY KEY, name text, price numeric);
INSERT INTO demo_cache.products VALUES (1, 'widget', 9.99), (2, 'gadget', 24.50);

\echo '== cache a query result for 10 minutes, tagged "products"'
SELECT cached_query('demo:products', 'SELECT id, name, price FROM demo_cache.products ORDER BY id', '10 minutes', '{products}');
\echo '== the second call is served from the cache'
SELECT cached_query('demo:products', 'SELECT id, name, price FROM demo_cache.products ORDER BY id', '10 minutes', '{products}');

\echo '== watch the table: any change enqueues one invalidation per tag per statement'
SELECT cache_invalidate_on_change('demo_cache.products', '{products}');
UPDATE demo_cache.products SET price = price * 1.1;
SELECT cache_key, tag, reason FROM cache_invalidation_queue ORDER BY id;

\echo '== drain it by hand (the worker does the same within milliseconds when it serves this database)'
SELECT drain_cache_invalidation_queue(100, 60) AS events_processed;
SELECT count(*) AS entries_left FROM query_cache WHERE cache_key = 'demo:products';

\echo '== warm the most used invalidated queries again'
SELECT warm_cache_top_queries(20) AS warmed;

\echo '== cache statistics and the workers'
SELECT * FROM cache_stats();
SELECT pid, database, state, events_drained_total, last_error, naptime_ms FROM worker_status();

SELECT cache_invalidate_off('demo_cache.products');
DELETE FROM query_cache WHERE cache_key LIKE 'demo:%';
