#!/usr/bin/env bash
# The drain deletes rows without locking them first while nobody else holds them (half the WAL
# records); a batch that meets a row another session holds gives way: it is rolled back and done
# again with row locks, which skip the held row and leave its event queued. Nothing waits for the
# holder, and without one no batch gives way.
. "$(dirname "$0")/lib.sh"

DB=$(fresh_db it_drain_gives_way)
q "$DB" "INSERT INTO query_cache (cache_key, result, tags, expires_at, owner_role)
         SELECT 'k' || g, '1', ARRAY['t'], now() + interval '1 hour', 'postgres'::regrole
         FROM generate_series(1, 3) g" >/dev/null
# drain DB: one drain call with DEBUG1 messages shown; prints how many of its batches gave way
batches_that_gave_way() {
  PGOPTIONS="-c client_min_messages=debug1" psql -X -q -d "$DB" -v ON_ERROR_STOP=1 \
    -c "SELECT drain_cache_invalidation_queue(100, 5)" 2>&1 >/dev/null \
    | grep -c "drain batch gave way to another session" || true
}
cached() { q "$DB" "SELECT coalesce(string_agg(cache_key, ' ' ORDER BY cache_key), '') FROM query_cache"; }

echo "nobody holds a row: no batch gives way"
q "$DB" "SELECT invalidate_cache('k1')" >/dev/null
check "an_uncontended_drain_never_gives_way" "$(batches_that_gave_way)" "0"
check "it deleted the entry" "$(cached)" "k2 k3"

echo "a session holds k2's row"
bg "$DB" "BEGIN; SELECT 1 FROM query_cache WHERE cache_key = 'k2' FOR UPDATE; SELECT pg_sleep(60); COMMIT"
holder=$!
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%'
                AND state = 'active' AND pid <> pg_backend_pid())" \
  || echo "the holding session did not start"
q "$DB" "SELECT invalidate_cache('k2'), invalidate_cache('k3')" >/dev/null
check "a_batch_meeting_a_held_row_gives_way" "$(batches_that_gave_way)" "1"
check "the row-locking batch skipped the held entry and deleted the other" "$(cached)" "k2"
check "the held entry's event stays queued" \
  "$(q "$DB" "SELECT string_agg(cache_key, ' ') FROM cache_invalidation_queue")" "k2"
check "the drain did not wait for the holder, which is still in its transaction" \
  "$(q "$DB" "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%'
              AND state = 'active' AND pid <> pg_backend_pid()")" "1"

echo "the holder ends"
q "$DB" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
wait "$holder" 2>/dev/null || true
check "the next drain finishes the event" "$(batches_that_gave_way) $(cached)|$(q "$DB" "SELECT count(*) FROM cache_invalidation_queue")" "0 |0"
finish
