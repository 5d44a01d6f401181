#!/usr/bin/env bash
# footprint: the shared memory pg_runbook allocates, and the background worker's resident memory
# after it has drained a million invalidation events.
. "$(dirname "$0")/lib.sh"
B="footprint"
EVENTS=$(size 1000000 10000)
while IFS='|' read -r name bytes; do
  [ -n "$name" ] && measure "$B" "shared memory: $name" "$bytes" bytes
done < <(q bench "SELECT name, size FROM pg_shmem_allocations WHERE name LIKE 'pg_runbook%' ORDER BY name")
worker bench on
q bench "TRUNCATE cache_invalidation_queue" >/dev/null
pid=$(q bench "SELECT pid FROM worker_status() WHERE pid IS NOT NULL LIMIT 1")
# VmRSS counts the shared buffers the worker has touched; RssAnon is its own (private) memory.
rss() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }
before_anon=$(rss RssAnon); before_shmem=$(rss RssShmem)
for _ in $(seq $((EVENTS / 100000 > 0 ? EVENTS / 100000 : 1))); do
  q bench "INSERT INTO cache_invalidation_queue (cache_key, reason)
           SELECT 'absent:' || i, 'footprint' FROM generate_series(1, $((EVENTS < 100000 ? EVENTS : 100000))) i" >/dev/null
done
for _ in $(seq 600); do
  [ "$(q bench "SELECT count(*) FROM cache_invalidation_queue")" = 0 ] && break; sleep 1
done
measure "$B" "worker private memory (RssAnon) before draining" "$before_anon" kB
measure "$B" "worker private memory (RssAnon) after draining $EVENTS events" "$(rss RssAnon)" kB
measure "$B" "worker shared buffers touched (RssShmem) before draining" "$before_shmem" kB
measure "$B" "worker shared buffers touched (RssShmem) after draining $EVENTS events" "$(rss RssShmem)" kB
