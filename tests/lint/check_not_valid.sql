-- bad
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD CONSTRAINT total_positive CHECK (total >= 0);
-- good
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD CONSTRAINT total_positive CHECK (total >= 0) NOT VALID;
ALTER TABLE "App"."Orders" VALIDATE CONSTRAINT total_positive;
