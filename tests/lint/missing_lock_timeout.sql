-- bad
ALTER TABLE "App"."Orders" ADD COLUMN coupon text;
-- good
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD COLUMN coupon text;
