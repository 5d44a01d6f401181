-- bad
BEGIN;
ALTER TYPE "App".order_state ADD VALUE 'refunded';
UPDATE "App"."Orders" SET state = 'refunded' WHERE id = 1;
COMMIT;
-- good
ALTER TYPE "App".order_state ADD VALUE 'refunded';
UPDATE "App"."Orders" SET state = 'refunded' WHERE id = 1;
