-- bad
SET lock_timeout = '2s';
BEGIN;
ALTER TABLE "App"."Orders" ADD CONSTRAINT total_positive CHECK (total >= 0) NOT VALID;
ALTER TABLE "App"."Orders" VALIDATE CONSTRAINT total_positive;
COMMIT;
-- good
SET lock_timeout = '2s';
BEGIN;
ALTER TABLE "App"."Orders" ADD CONSTRAINT total_positive CHECK (total >= 0) NOT VALID;
COMMIT;
ALTER TABLE "App"."Orders" VALIDATE CONSTRAINT total_positive;
