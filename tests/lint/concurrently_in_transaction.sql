-- bad
BEGIN;
CREATE INDEX CONCURRENTLY "Orders_note_idx" ON "App"."Orders" (note);
COMMIT;
-- good
CREATE INDEX CONCURRENTLY "Orders_note_idx" ON "App"."Orders" (note);
