-- Materialized views: the refresh log, the source snapshots behind only_if_changed, and the runs
-- in flight. Written by the refresh worker, one transaction per view.

CREATE TABLE @extschema@.mv_refresh_log (
    id          bigserial PRIMARY KEY,
    run_id      bigint      NOT NULL,
    schemaname  text        NOT NULL,
    matview     text        NOT NULL,
    mode        text        NOT NULL CHECK (mode IN ('concurrent', 'plain')),
    status      text        NOT NULL CHECK (status IN ('success', 'failed', 'skipped', 'unchanged')),
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    duration_ms float8      NOT NULL,
    rows_after  bigint,
    error       text,
    worker      int,
    refreshed_by text
);
CREATE INDEX mv_refresh_log_started_at ON @extschema@.mv_refresh_log (started_at);
CREATE INDEX mv_refresh_log_run_id ON @extschema@.mv_refresh_log (run_id);
COMMENT ON TABLE @extschema@.mv_refresh_log IS
    'One row per materialized view per refresh run: mode (concurrent|plain), status (success|failed|skipped|unchanged), timing, rows after, error, the worker of the run that took it and the role it was refreshed as. Pruned after pg_runbook.refresh_log_retention.';

CREATE SEQUENCE @extschema@.mv_refresh_run_id;
COMMENT ON SEQUENCE @extschema@.mv_refresh_run_id IS 'Run ids of refresh_materialized_views_staggered() and refresh_analytics_views_concurrent() calls.';

CREATE TABLE @extschema@.mv_refresh_sources (
    matview     oid         NOT NULL,
    source      oid         NOT NULL,
    writes      bigint      NOT NULL,
    filenode    oid         NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (matview, source)
);
COMMENT ON TABLE @extschema@.mv_refresh_sources IS
    'For only_if_changed: each source relation''s write counter (inserts+updates+deletes) and file as they were at the view''s last successful refresh.';

CREATE TABLE @extschema@.mv_refresh_runs (
    run_id      bigint PRIMARY KEY,
    worker_pid  int         NOT NULL,
    caller_pid  int         NOT NULL,
    views       int         NOT NULL,
    options     text        NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    parallelism int         NOT NULL DEFAULT 1,
    total_ms    float8,
    refreshed_by text
);
COMMENT ON TABLE @extschema@.mv_refresh_runs IS
    'Refresh runs: written by the refresh workers when the run starts and when its last worker finishes: parallelism (workers), total_ms (from the call to the end), the role it ran as; refresh_status() shows those still running.';

COMMENT ON FUNCTION @extschema@.verify_materialized_view_indexes(text, text) IS
    'One row per materialized view: its unique index usable by REFRESH ... CONCURRENTLY, FAIL with the reason when there is none.';
COMMENT ON FUNCTION @extschema@.refresh_materialized_views_staggered(text, text, interval, boolean, interval, interval, boolean) IS
    'Refreshes matching materialized views in dependency order, each in its own transaction in a background worker running as the caller, concurrently where possible, with a pause between views; logs each to mv_refresh_log. A view the caller may not refresh is skipped. For runbook_operator.';
COMMENT ON FUNCTION @extschema@.refresh_materialized_views() IS
    'Refreshes every materialized view the caller may refresh, plainly and in dependency order, logging each to mv_refresh_log. For runbook_operator.';
COMMENT ON FUNCTION @extschema@.refresh_status() IS
    'Refresh runs in flight, one row per worker: how many views are done, the view it refreshes and for how long. For runbook_reader.';
COMMENT ON FUNCTION @extschema@.prune_mv_refresh_log() IS
    'Deletes mv_refresh_log rows older than pg_runbook.refresh_log_retention (a server setting); returns how many. For runbook_admin.';
