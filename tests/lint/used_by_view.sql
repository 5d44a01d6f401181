-- bad
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" RENAME COLUMN note TO remark;
ALTER TABLE "App"."Orders" DROP COLUMN note;
-- good
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" DROP COLUMN legacy;
