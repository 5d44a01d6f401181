#!/usr/bin/env bash
# make bench: builds the extension in release mode, starts a throwaway cluster like the demo's
# (preloaded, fsync on, shared_buffers 1 GB), runs every bench/*.sh side by side with its plain-SQL
# baseline, and rewrites BENCHMARKS.md from the measurements.
#   QUICK=1   tiny sizes and one run, to keep the benchmarks from rotting (make test runs this);
#             writes its report under .run/ instead of BENCHMARKS.md
#   BENCH=x   run only bench/x.sh; the report keeps the other benchmarks' last results
. "$(dirname "$0")/lib.sh"
export QUICK=${QUICK:-0}
WITH_BENCH_PACKAGES=1 "$REPO/scripts/setup.sh"

if [ "$QUICK" = 1 ]; then
  cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
  buffers=128MB; report=$RUN_DIR/BENCHMARKS.quick.md
else
  cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
  buffers=1GB; report=$REPO/BENCHMARKS.md
fi

cluster_destroy bench
cluster_start bench "$PRELOAD_ALL" "shared_buffers = $buffers" "max_wal_size = 4GB" \
  "pg_runbook.database = 'bench'" "cron.database_name = 'bench'"
trap 'cluster_destroy bench' EXIT
psql -X -q -d postgres -c "CREATE DATABASE bench" >/dev/null
q bench "CREATE EXTENSION pg_runbook; CREATE EXTENSION pg_stat_statements;" >/dev/null

# One result file per benchmark, so a BENCH=x run replaces only its own figures.
results=$RUN_DIR/bench-results-$([ "$QUICK" = 1 ] && echo quick || echo full)
[ -z "${BENCH:-}" ] && rm -rf "$results"
mkdir -p "$results"
printf 'meta\tserver\t%s\n' "$(q bench 'SHOW server_version')" > "$results/0meta.tsv"
for f in "$REPO"/bench/*.sh; do
  name=$(basename "$f" .sh)
  [ "$name" = lib ] && continue
  [ -n "${BENCH:-}" ] && [ "$BENCH" != "$name" ] && continue
  say "bench: $name"
  bash "$f" > "$results/$name.tsv.part"
  mv "$results/$name.tsv.part" "$results/$name.tsv"
done
# The whole run's time, release build included (a full run only: BENCH=x runs one benchmark).
[ -z "${BENCH:-}" ] && printf 'meta\telapsed\t%s\n' "$SECONDS" > "$results/elapsed.tsv"
cat "$results"/*.tsv > "$results/all"
python3 "$REPO/bench/report.py" "$results/all" "$report"
say "wrote $report"
