-- bad
REINDEX INDEX "App"."Orders_total_idx";
REINDEX TABLE "App"."Orders";
-- good
REINDEX INDEX CONCURRENTLY "App"."Orders_total_idx";
