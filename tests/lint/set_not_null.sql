-- bad
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ALTER COLUMN "userId" SET NOT NULL;
-- good
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD CONSTRAINT "Orders_userId_not_null" CHECK ("userId" IS NOT NULL) NOT VALID;
ALTER TABLE "App"."Orders" VALIDATE CONSTRAINT "Orders_userId_not_null";
ALTER TABLE "App"."Orders" ALTER COLUMN "userId" SET NOT NULL;
