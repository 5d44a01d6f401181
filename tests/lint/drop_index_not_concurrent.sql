-- bad
SET lock_timeout = '2s';
DROP INDEX "App"."Orders_total_idx";
-- good
DROP INDEX CONCURRENTLY "App"."Orders_total_idx";
