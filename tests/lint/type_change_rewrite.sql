-- bad
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ALTER COLUMN total TYPE bigint;
-- good
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ALTER COLUMN note TYPE varchar(40);
