-- The demo's application: a small scanning service with users, scans and orders, and some traffic.
\echo '== the demo application: schema app, with users, "Scan" and orders'
CREATE SCHEMA app;
CREATE TABLE app.users (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE app."Scan" (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES app.users (id),
  "normalizedInput" text NOT NULL,
  "createdAt" timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE app.orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES app.users (id),
  total numeric(10, 2) NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO app.users (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 2000) g;
INSERT INTO app."Scan" (user_id, "normalizedInput", "createdAt")
SELECT 1 + g % 2000, 'input-' || (g % 500), now() - g * interval '1 minute' FROM generate_series(1, 20000) g;
INSERT INTO app.orders (user_id, total, created_at)
SELECT 1 + g % 2000, (g % 300) + 0.99, now() - g * interval '5 minutes' FROM generate_series(1, 5000) g;
ANALYZE app.users, app."Scan", app.orders;

-- Some traffic, so the statistics views have something to say.
SELECT count(*) AS scans_for_one_input FROM app."Scan" WHERE "normalizedInput" = 'input-7' \gset
SELECT sum(total) AS revenue FROM app.orders o JOIN app.users u ON u.id = o.user_id WHERE u.email LIKE 'user1%' \gset
SELECT count(*) AS recent FROM app."Scan" WHERE "createdAt" > now() - interval '1 day' \gset
