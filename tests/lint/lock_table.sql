-- bad
BEGIN;
SET LOCAL lock_timeout = '2s';
LOCK TABLE "App"."Orders" IN SHARE MODE;
COMMIT;
-- good
BEGIN;
CREATE TABLE "App".scratch (id int);
LOCK TABLE "App".scratch IN ACCESS EXCLUSIVE MODE;
COMMIT;
