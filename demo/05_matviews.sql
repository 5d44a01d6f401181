-- Materialized views: index checks, a staggered dependency-ordered refresh, and the refresh log.
DROP SCHEMA IF EXISTS demo_matviews CASCADE;
CREATE SCHEMA demo_matviews;
CREATE TABLE demo_matviews.scans (id int PRIMARY KEY, site int NOT NULL);
INSERT INTO demo_matviews.scans SELECT g, g % 4 FROM generate_series(1, 20000) g;
CREATE MATERIALIZED VIEW demo_matviews.daily_scans AS
  SELECT site, count(*) AS scans FROM demo_matviews.scans GROUP BY site;
CREATE UNIQUE INDEX ON demo_matviews.daily_scans (site);
CREATE MATERIALIZED VIEW demo_matviews.busiest_site AS
  SELECT site, 1000000 / (scans - 5100) AS per_extra_scan FROM demo_matviews.daily_scans;
CREATE MATERIALIZED VIEW demo_matviews.all_sites AS SELECT DISTINCT site FROM demo_matviews.scans;

\echo
\echo '== Which views can be refreshed CONCURRENTLY?'
SELECT matviewname, unique_index, can_refresh_concurrently, status, detail
FROM verify_materialized_view_indexes(schema_pattern => 'demo_matviews');

\echo
\echo '== Refresh them in dependency order, 200 ms apart'
SELECT matview, mode, status, error
FROM refresh_materialized_views_staggered(schema_pattern => 'demo_matviews', stagger => '200ms');

\echo
\echo '== Nothing written since: only_if_changed skips every view'
SELECT matview, status FROM refresh_materialized_views_staggered(schema_pattern => 'demo_matviews', only_if_changed => true);

\echo
\echo '== New rows make busiest_site divide by zero: it fails, the others still refresh'
INSERT INTO demo_matviews.scans SELECT g, 0 FROM generate_series(20001, 20100) g;
SELECT site, count(*) FROM demo_matviews.scans GROUP BY site ORDER BY site;
SELECT matview, mode, status, error FROM refresh_materialized_views_staggered(schema_pattern => 'demo_matviews');

\echo
\echo '== The refresh log (runbook: verify refresh success)'
SELECT run_id, matview, mode, status, rows_after, error
FROM mv_refresh_log WHERE schemaname = 'demo_matviews' ORDER BY started_at DESC, id DESC LIMIT 10;
