-- bad
CREATE INDEX "Orders_userId_idx" ON "App"."Orders" ("userId");
-- good
CREATE INDEX CONCURRENTLY "Orders_userId_idx" ON "App"."Orders" ("userId");
