-- The request sketch aggregates (functions in src/metrics/sketch_agg.rs).

-- ---- the sketch aggregates -----------------------------------------------------------------------
CREATE AGGREGATE @extschema@.request_sketch(duration_ms double precision, status_code integer, cache_hit boolean) (
    SFUNC = @extschema@.request_sketch_trans,
    STYPE = internal,
    SSPACE = 512,
    FINALFUNC = @extschema@.sketch_final,
    COMBINEFUNC = @extschema@.sketch_combine,
    SERIALFUNC = @extschema@.sketch_serialize,
    DESERIALFUNC = @extschema@.sketch_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.request_sketch(double precision, integer, boolean) IS
  'A mergeable request sketch: durations in a logarithmic histogram (quantiles within 1%), with count, errors (status >= 500) and cache hits. Read it with sketch_quantile(), sketch_count() and friends.';

CREATE AGGREGATE @extschema@.sketch_union(sketch bytea) (
    SFUNC = @extschema@.sketch_union_trans,
    STYPE = internal,
    SSPACE = 512,
    FINALFUNC = @extschema@.sketch_final,
    COMBINEFUNC = @extschema@.sketch_combine,
    SERIALFUNC = @extschema@.sketch_serialize,
    DESERIALFUNC = @extschema@.sketch_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.sketch_union(bytea) IS
  'Merges stored request sketches (for example a window of 5-minute buckets) into one, without reading raw rows.';

COMMENT ON FUNCTION @extschema@.request_sketch_trans(internal, double precision, integer, boolean) IS 'Transition function of request_sketch().';
COMMENT ON FUNCTION @extschema@.sketch_union_trans(internal, bytea) IS 'Transition function of sketch_union().';
COMMENT ON FUNCTION @extschema@.sketch_combine(internal, internal) IS 'Combine function of request_sketch() and sketch_union().';
COMMENT ON FUNCTION @extschema@.sketch_serialize(internal) IS 'Serialization function of request_sketch() and sketch_union().';
COMMENT ON FUNCTION @extschema@.sketch_deserialize(bytea, internal) IS 'Deserialization function of request_sketch() and sketch_union().';
COMMENT ON FUNCTION @extschema@.sketch_final(internal) IS 'Final function of request_sketch() and sketch_union(): the stored sketch bytes.';
COMMENT ON FUNCTION @extschema@.sketch_quantile(bytea, double precision) IS 'The q-quantile (0..1) of a sketch''s durations in ms, within 1% of the exact value (percentile_disc''s rank rule).';
COMMENT ON FUNCTION @extschema@.sketch_merge(bytea, bytea) IS 'Two sketches merged into one.';
COMMENT ON FUNCTION @extschema@.sketch_count(bytea) IS 'Requests counted in a sketch.';
COMMENT ON FUNCTION @extschema@.sketch_errors(bytea) IS 'Requests with status >= 500 counted in a sketch.';
COMMENT ON FUNCTION @extschema@.sketch_cache_hits(bytea) IS 'Requests with cache_hit true counted in a sketch.';
COMMENT ON FUNCTION @extschema@.sketch_cache_lookups(bytea) IS 'Requests with a known cache_hit counted in a sketch.';
COMMENT ON FUNCTION @extschema@.sketch_max(bytea) IS 'The largest duration in a sketch, in ms (exact).';
COMMENT ON FUNCTION @extschema@.sketch_mean(bytea) IS 'The mean duration in a sketch, in ms (exact).';


-- One aggregate for a whole rollup: groups by (endpoint, 5-minute bucket) inside its state, which
-- costs less per raw row than a GROUP BY on date_bin(); rollup_rows() turns its result into rows.
CREATE AGGREGATE @extschema@.request_rollup(created_at timestamptz, endpoint text, duration_ms double precision,
                                            status_code integer, cache_hit boolean) (
    SFUNC = @extschema@.request_rollup_trans,
    STYPE = internal,
    SSPACE = 65536,
    FINALFUNC = @extschema@.rollup_final,
    COMBINEFUNC = @extschema@.rollup_combine,
    SERIALFUNC = @extschema@.rollup_serialize,
    DESERIALFUNC = @extschema@.rollup_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.request_rollup(timestamptz, text, double precision, integer, boolean) IS
  'Request sketches per endpoint and 5-minute bucket (aligned to 2000-01-01 UTC) in one value; rollup_rows() expands it. Used by rollup_metrics().';
COMMENT ON FUNCTION @extschema@.request_rollup_trans(internal, timestamptz, text, double precision, integer, boolean) IS 'Transition function of request_rollup().';
COMMENT ON FUNCTION @extschema@.rollup_combine(internal, internal) IS 'Combine function of request_rollup().';
COMMENT ON FUNCTION @extschema@.rollup_serialize(internal) IS 'Serialization function of request_rollup().';
COMMENT ON FUNCTION @extschema@.rollup_final(internal) IS 'Final function of request_rollup(): its rows (bucket, endpoint, stored sketch), read by rollup_rows().';
COMMENT ON FUNCTION @extschema@.rollup_deserialize(bytea, internal) IS 'Deserialization function of request_rollup().';
COMMENT ON FUNCTION @extschema@.rollup_rows(bytea) IS 'The rows of a request_rollup() value: bucket, endpoint (NULL for all endpoints), sketch and the figures performance_analytics_5min stores beside it.';
COMMENT ON FUNCTION @extschema@.sketch_stats(bytea) IS 'The figures performance_analytics_5min stores beside a sketch: requests, errors, err_rate, p50_ms, p95_ms, p99_ms, max_ms, avg_ms, cache_hits, cache_hit_rate_percent.';
