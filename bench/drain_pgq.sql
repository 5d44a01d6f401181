-- The peer: the same invalidations carried by PgQ (Debian's postgresql-15-pgq3) and consumed the way a
-- PgQ consumer applies them: per batch, one set-based statement deletes the entries its events name
-- (by key with one btree scan, by tag with one GIN probe per distinct tag), then finish_batch and
-- COMMIT, so later batches find the entries earlier ones deleted already pruned. PgQ forms batches
-- from ticks, so the fill ticks after every 1000 events; it never deletes events (it rotates whole
-- tables), so there is no event DELETE to pay for.
CREATE OR REPLACE PROCEDURE bench_drain_pgq(INOUT total bigint DEFAULT 0) LANGUAGE plpgsql AS $$
DECLARE
  batch bigint;
  applied bigint;
BEGIN
  total := 0;
  LOOP
    batch := pgq.next_batch('bench_invalidation', 'bench_drain');
    EXIT WHEN batch IS NULL;
    WITH ev AS (SELECT ev_type, ev_data FROM pgq.get_batch_events(batch)),
    by_key AS (
      DELETE FROM query_cache WHERE cache_key = ANY (ARRAY(SELECT ev_data FROM ev WHERE ev_type = 'key'))
      RETURNING 1),
    by_tag AS (
      DELETE FROM query_cache c USING (SELECT DISTINCT ev_data FROM ev WHERE ev_type = 'tag') t
      WHERE c.tags @> ARRAY[t.ev_data] RETURNING 1)
    SELECT count(*) + 0 * ((SELECT count(*) FROM by_key) + (SELECT count(*) FROM by_tag)) INTO applied FROM ev;
    PERFORM pgq.finish_batch(batch);
    COMMIT;
    total := total + applied;
  END LOOP;
END $$;
