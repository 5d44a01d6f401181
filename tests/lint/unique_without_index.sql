-- bad
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD CONSTRAINT "Orders_ref_key" UNIQUE (ref);
-- good
CREATE UNIQUE INDEX CONCURRENTLY "Orders_ref_key" ON "App"."Orders" (ref);
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD CONSTRAINT "Orders_ref_key" UNIQUE USING INDEX "Orders_ref_key";
