#!/usr/bin/env bash
# warm_cache_top_queries() loads what a warmed query reads into shared buffers with the real
# pg_prewarm: after a restart has emptied the buffers, warming one invalidated query leaves every
# block of its table and of the index its plan uses in shared buffers (pg_buffercache), where
# running the query alone reads only a few; so does an index a Bitmap Index Scan reads (a plan
# node that names no schema: the index is found in its table's).
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db it_warm_prewarm)
q "$DB" "CREATE EXTENSION pg_prewarm; CREATE EXTENSION pg_buffercache;
         CREATE SCHEMA app;
         CREATE TABLE app.\"Orders\" (id int PRIMARY KEY, v int);
         INSERT INTO app.\"Orders\" SELECT i, i % 97 FROM generate_series(1, 50000) i;
         CREATE INDEX \"Orders_v_idx\" ON app.\"Orders\" (v);" >/dev/null
q "$DB" "VACUUM ANALYZE app.\"Orders\"" >/dev/null
q "$DB" "SELECT cached_query('warm_k', 'SELECT v FROM app.\"Orders\" WHERE id = 42', '1 hour')" >/dev/null
q "$DB" "SELECT cached_query('warm_bitmap', 'SELECT sum(id) FROM app.\"Orders\" WHERE v = 5 OR v = 7', '1 hour')" >/dev/null
q "$DB" "SELECT invalidate_cache('warm_k'), invalidate_cache('warm_bitmap')" >/dev/null
q "$DB" "SELECT drain_cache_invalidation_queue(10, 1)" >/dev/null

# blocks of REL's main fork in shared buffers (a plan may read its visibility map too), and its
# size in blocks
buffered() {
  q "$DB" "SELECT count(*) FROM pg_buffercache b
           WHERE b.reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND b.relfilenode = pg_relation_filenode('$1') AND b.relforknumber = 0"
}
blocks() { q "$DB" "SELECT pg_relation_size('$1') / current_setting('block_size')::int"; }

cluster_restart integration
check "the restart left the table out of shared buffers" "$(buffered 'app."Orders"')" "0"
check "the plan of the warmed query uses the primary key" \
  "$(q "$DB" "EXPLAIN (COSTS OFF) SELECT v FROM app.\"Orders\" WHERE id = 42" | grep -c 'Index Scan using \"Orders_pkey\"')" "1"
check "the plan of the other reads its index with two Bitmap Index Scans under a BitmapOr" \
  "$(q "$DB" "EXPLAIN (COSTS OFF) SELECT sum(id) FROM app.\"Orders\" WHERE v = 5 OR v = 7" | grep -c 'Bitmap Index Scan on \"Orders_v_idx\"')" "2"
check "warming recomputes the invalidated entries" "$(q "$DB" "SELECT warm_cache_top_queries(5)")" "2"
check "every block of the table is in shared buffers" "$(buffered 'app."Orders"')" "$(blocks 'app."Orders"')"
check "every block of the index its plan uses is in shared buffers" \
  "$(buffered 'app."Orders_pkey"')" "$(blocks 'app."Orders_pkey"')"
check "every block of the index a Bitmap Index Scan reads is in shared buffers" \
  "$(buffered 'app."Orders_v_idx"')" "$(blocks 'app."Orders_v_idx"')"
finish
