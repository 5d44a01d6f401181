#!/usr/bin/env bash
# check_data_integrity() while a migration holds a lock on one table: that table's NOT VALID
# constraint is reported as not counted (lock timeout), every other finding still comes back; a
# statement timeout or cancel is not swallowed the same way.
. "$(dirname "$0")/lib.sh"
DB=$(fresh_db it_integrity_locks)
q "$DB" "CREATE TABLE orders (id int PRIMARY KEY, total int);
  INSERT INTO orders SELECT g, CASE WHEN g <= 3 THEN -1 ELSE g END FROM generate_series(1, 100) g;
  ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;
  CREATE TABLE refunds (id int PRIMARY KEY, amount int);
  INSERT INTO refunds SELECT g, CASE WHEN g <= 2 THEN -5 ELSE g END FROM generate_series(1, 50) g;
  ALTER TABLE refunds ADD CONSTRAINT refunds_amount_positive CHECK (amount >= 0) NOT VALID" >/dev/null
findings="SELECT string_agg(object || ' ' || status, ', ' ORDER BY object) FROM check_data_integrity() WHERE \"check\" = 'not_valid_constraint'"
check "without a lock both constraints are counted" "$(q "$DB" "$findings")" \
  "orders_total_positive on public.orders FAIL, refunds_amount_positive on public.refunds FAIL"

bg "$DB" "BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;"
wait_for "$DB" "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'orders'::regclass AND mode = 'AccessExclusiveLock' AND granted)"
check "a_locked_table_costs_its_own_count_not_the_whole_check" \
  "$(q "$DB" "SET pg_runbook.lock_timeout = '200ms'; $findings")" \
  "orders_total_positive on public.orders WARN, refunds_amount_positive on public.refunds FAIL"
check_match "the not-counted constraint says why" \
  "$(q "$DB" "SET pg_runbook.lock_timeout = '200ms'; SELECT detail FROM check_data_integrity() WHERE object LIKE 'orders_total_positive%'")" \
  "could not be counted: canceling statement due to lock timeout"
out=$(q "$DB" "SET pg_runbook.lock_timeout = '10s'; SET statement_timeout = '300ms'; $findings" 2>&1 || true)
check_match "a_statement_timeout_is_not_swallowed" "$out" "canceling statement due to statement timeout"
wait
finish
