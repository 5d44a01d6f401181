-- bad
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD COLUMN "createdAt" timestamptz DEFAULT clock_timestamp();
-- good
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD COLUMN "createdAt" timestamptz DEFAULT now();
