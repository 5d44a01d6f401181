#!/usr/bin/env bash
# invalidation latency: an UPDATE on a watched table commits; how long until the tagged cache entry
# is gone, with the worker loaded. With the latch wake (the enqueue wakes the worker at commit)
# against the same with the wake disabled (the worker finds the event at its next naptime).
. "$(dirname "$0")/lib.sh"
B="invalidation latency"
N=$(size 200 5)
N_NAPTIME=$(size 10 2)   # each round trip waits out a whole naptime: fewer of them
worker bench on
q bench "DROP TABLE IF EXISTS bench_watched; CREATE TABLE bench_watched (id int PRIMARY KEY, v int);
  INSERT INTO bench_watched VALUES (1, 0);
  SELECT cache_invalidate_on_change('bench_watched', ARRAY['watched']);
  TRUNCATE query_cache, cache_invalidation_queue" >/dev/null
q bench "CREATE OR REPLACE PROCEDURE bench_latency(n int) LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz;
BEGIN
  DROP TABLE IF EXISTS bench_latency_ms; CREATE TABLE bench_latency_ms (ms float8);
  COMMIT;
  FOR i IN 1..n LOOP
    PERFORM cache_put('latency', '{}'::jsonb, '1 hour', ARRAY['watched']);
    COMMIT;
    UPDATE bench_watched SET v = v + 1 WHERE id = 1;
    t0 := clock_timestamp();
    COMMIT;
    WHILE EXISTS (SELECT 1 FROM query_cache WHERE cache_key = 'latency') LOOP
      PERFORM pg_sleep(0.0002);
      IF clock_timestamp() - t0 > interval '10 seconds' THEN RAISE EXCEPTION 'entry not invalidated'; END IF;
    END LOOP;
    INSERT INTO bench_latency_ms VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
    COMMIT;
  END LOOP;
END \$\$" >/dev/null

run() { # run LABEL WAKE ROUND_TRIPS
  q postgres "ALTER SYSTEM SET pg_runbook.wake_on_enqueue = $2" >/dev/null; q postgres "SELECT pg_reload_conf()" >/dev/null; sleep 1
  for _ in $(seq "$RUNS"); do
    psql -X -q -d bench -c "SET pg_runbook.wake_on_enqueue = $2" -c "CALL bench_latency($3)" >/dev/null
    measure "$B" "$1, p50" "$(q bench "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM bench_latency_ms")" ms
    measure "$B" "$1, p99" "$(q bench "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FROM bench_latency_ms")" ms
  done
}
run "pg_runbook: worker woken at commit" on "$N"
run "baseline: worker on its naptime (wake disabled)" off "$N_NAPTIME"
q postgres "ALTER SYSTEM RESET pg_runbook.wake_on_enqueue" >/dev/null; q postgres "SELECT pg_reload_conf()" >/dev/null
target "$B" "pg_runbook: worker woken at commit, p99" - le 50 abs
note "$B" "$N UPDATE-to-invalidated round trips per run with the wake ($N_NAPTIME without), measured in a procedure that commits the UPDATE and polls for the entry every 0.2 ms; pg_runbook.naptime at its default."
