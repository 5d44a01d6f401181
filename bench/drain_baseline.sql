-- The queue drain a careful DBA would write without pg_runbook: a PL/pgSQL loop that claims a batch
-- of events with FOR UPDATE SKIP LOCKED (so several drainers can run at once) and applies each one.
CREATE OR REPLACE FUNCTION bench_drain_loop(batch_size int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  ev record;
  claimed int;
  total bigint := 0;
BEGIN
  LOOP
    claimed := 0;
    FOR ev IN SELECT id, cache_key, tag FROM cache_invalidation_queue
              ORDER BY id LIMIT batch_size FOR UPDATE SKIP LOCKED LOOP
      IF ev.cache_key IS NOT NULL THEN
        DELETE FROM query_cache WHERE cache_key = ev.cache_key;
      ELSE
        DELETE FROM query_cache WHERE tags @> ARRAY[ev.tag];
      END IF;
      DELETE FROM cache_invalidation_queue WHERE id = ev.id;
      claimed := claimed + 1;
    END LOOP;
    total := total + claimed;
    EXIT WHEN claimed = 0;
  END LOOP;
  RETURN total;
END $$;

-- The limit: everything in one set-based statement (no batching, so no concurrent drainers): the
-- events deleted at once, the entries they name deleted by key (a hash join) and by tag (one GIN
-- probe per distinct tag).
CREATE OR REPLACE FUNCTION bench_drain_limit() RETURNS bigint LANGUAGE sql AS $$
  WITH ev AS (DELETE FROM cache_invalidation_queue RETURNING cache_key, tag),
  by_key AS (
    DELETE FROM query_cache c USING (SELECT DISTINCT cache_key FROM ev WHERE cache_key IS NOT NULL) k
    WHERE c.cache_key = k.cache_key RETURNING 1),
  by_tag AS (
    DELETE FROM query_cache c USING (SELECT DISTINCT tag FROM ev WHERE tag IS NOT NULL) t
    WHERE c.tags @> ARRAY[t.tag] RETURNING 1)
  SELECT (SELECT count(*) FROM ev) + 0 * ((SELECT count(*) FROM by_key) + (SELECT count(*) FROM by_tag))
$$;
