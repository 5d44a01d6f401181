-- bad
ALTER TABLE "App".events ATTACH PARTITION "App".events_2026_03 FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
-- good
CREATE TABLE "App".events_2026_04 (id bigint, at timestamptz NOT NULL);
ALTER TABLE "App".events ATTACH PARTITION "App".events_2026_04 FOR VALUES FROM ('2026-04-01') TO ('2026-05-01');
