-- bad
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD CONSTRAINT "Orders_userId_fkey" FOREIGN KEY ("userId") REFERENCES "App".customers (id);
-- good
SET lock_timeout = '2s';
ALTER TABLE "App"."Orders" ADD CONSTRAINT "Orders_userId_fkey" FOREIGN KEY ("userId") REFERENCES "App".customers (id) NOT VALID;
ALTER TABLE "App"."Orders" VALIDATE CONSTRAINT "Orders_userId_fkey";
