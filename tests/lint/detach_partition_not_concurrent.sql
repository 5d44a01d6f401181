-- bad
SET lock_timeout = '2s';
ALTER TABLE "App".events DETACH PARTITION "App".events_2026_01;
-- good
ALTER TABLE "App".events DETACH PARTITION "App".events_2026_01 CONCURRENTLY;
