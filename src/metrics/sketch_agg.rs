//! The request sketch as PostgreSQL aggregates: `request_sketch(duration_ms, status_code,
//! cache_hit)` over raw rows and `sketch_union(sketch)` over stored sketches, both with
//! internal state, a combine function and (de)serialization, so they run inside one set-based
//! `INSERT ... SELECT ... GROUP BY` (and in parallel plans) without raw rows passing through SPI.
//!
//! The state lives in the aggregate's memory context and is dropped with it. The math is
//! `runbook_core::sketch`.

use crate::error;
use pgrx::PgMemoryContexts;
use pgrx::datum::Internal;
use pgrx::prelude::*;
use runbook_core::rollup::Rollup;
use runbook_core::sketch::{Sketch, SketchView};

/// The aggregate's memory context; outside an aggregate call this is a misuse and an ERROR.
fn agg_context(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::MemoryContext {
    let mut ctx: pg_sys::MemoryContext = std::ptr::null_mut();
    // SAFETY: fcinfo is this call's own (pgrx passes it through); AggCheckCallContext only reads
    // its context field and writes the aggregate's memory context into `ctx`.
    if unsafe { pg_sys::AggCheckCallContext(fcinfo, &mut ctx) } == 0 || ctx.is_null() {
        error::invalid_argument(
            "state",
            "sketch transition functions may only be called by an aggregate",
        );
    }
    ctx
}

/// A new aggregate state, allocated in the aggregate's memory context and dropped with it.
fn new_state<'a, T>(fcinfo: pg_sys::FunctionCallInfo, state: T) -> &'a mut T {
    let p = PgMemoryContexts::For(agg_context(fcinfo)).leak_and_drop_on_delete(state);
    // SAFETY: a leaked Box holding `state`: non-NULL, initialised and not referenced elsewhere;
    // it is freed only when the aggregate's memory context is reset, after the aggregate's calls.
    unsafe { &mut *p }
}

/// The state behind an aggregate function's `internal` argument (None before the first row).
fn state_of<'a, T>(state: Option<Internal>) -> Option<&'a mut T> {
    let p = state?.unwrap()?.cast_mut_ptr::<T>();
    // SAFETY: the `internal` state argument of each function here is the `T` that `new_state`
    // made for the same aggregate: the aggregate declarations (sql/sketch.sql) pair every
    // function with its aggregate's state type, and SQL cannot make an `internal` value. It lives
    // in the aggregate's memory context, longer than this call, and PostgreSQL passes a state to
    // one call at a time, so this is the only reference to it.
    unsafe { p.as_mut() }
}

fn into_internal<T>(p: *mut T) -> Internal {
    Internal::from(Some(pg_sys::Datum::from(p)))
}

fn decode(bytes: &[u8]) -> Sketch {
    Sketch::from_bytes(bytes).unwrap_or_else(|e| error::invalid_argument("sketch", e))
}

/// A stored sketch read in place (the readers below allocate nothing).
fn view(bytes: &[u8]) -> SketchView<'_> {
    SketchView::parse(bytes).unwrap_or_else(|e| error::invalid_argument("sketch", e))
}

/// `d`, or 22023 when it is NaN or infinite: an infinite duration would ask the histogram for a
/// bin at the end of the i32 range (gigabytes of empty bins before any error).
fn finite_duration(d: f64) -> f64 {
    if !d.is_finite() {
        error::invalid_argument(
            "duration_ms",
            format!("{d} is not a finite number of milliseconds"),
        );
    }
    d
}

/// Transition of request_sketch(): counts one request. NULL durations are skipped.
#[pg_extern(immutable, parallel_safe)]
fn request_sketch_trans(
    state: Option<Internal>,
    duration_ms: Option<f64>,
    status_code: Option<i32>,
    cache_hit: Option<bool>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<Internal> {
    let p = match state_of::<Sketch>(state) {
        Some(p) => p,
        None => new_state(fcinfo, Sketch::new()),
    };
    if let Some(d) = duration_ms {
        p.add_request(finite_duration(d), status_code, cache_hit);
    }
    Some(into_internal(p))
}

/// Transition of sketch_union(): merges one stored sketch.
#[pg_extern(immutable, parallel_safe)]
fn sketch_union_trans(
    state: Option<Internal>,
    sketch: Option<&[u8]>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<Internal> {
    let p = match state_of::<Sketch>(state) {
        Some(p) => p,
        None => new_state(fcinfo, Sketch::new()),
    };
    if let Some(bytes) = sketch {
        p.merge(&decode(bytes));
    }
    Some(into_internal(p))
}

/// An aggregate state that absorbs another of its kind (what a combine function does).
trait Combinable: Clone {
    fn absorb(&mut self, other: &Self);
}

impl Combinable for Sketch {
    fn absorb(&mut self, other: &Self) {
        self.merge(other)
    }
}

impl Combinable for Rollup {
    fn absorb(&mut self, other: &Self) {
        self.merge(other)
    }
}

/// The combine step of a parallel aggregate: the second state merged into the first, either
/// missing (a worker that saw no rows) taken as empty; a state first seen here is copied into the
/// aggregate's memory context.
fn combine<T: Combinable>(
    a: Option<Internal>,
    b: Option<Internal>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<Internal> {
    match (state_of::<T>(a), state_of::<T>(b)) {
        (None, None) => None,
        (Some(pa), None) => Some(into_internal(pa)),
        (None, Some(pb)) => Some(into_internal(new_state(fcinfo, pb.clone()))),
        (Some(pa), Some(pb)) => {
            pa.absorb(pb);
            Some(into_internal(pa))
        }
    }
}

/// Combine function of both aggregates (parallel plans): merges the second state into the first.
#[pg_extern(immutable, parallel_safe)]
fn sketch_combine(
    a: Option<Internal>,
    b: Option<Internal>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<Internal> {
    combine::<Sketch>(a, b, fcinfo)
}

/// Serialization of both aggregates' state: the sketch's stored bytes.
#[pg_extern(immutable, parallel_safe, strict)]
fn sketch_serialize(state: Option<Internal>) -> Option<Vec<u8>> {
    state_of::<Sketch>(state).map(|p| p.to_bytes())
}

/// Deserialization of both aggregates' state.
#[pg_extern(immutable, parallel_safe, strict)]
fn sketch_deserialize(
    bytes: Option<&[u8]>,
    _unused: Option<Internal>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<Internal> {
    bytes.map(|b| into_internal(new_state(fcinfo, decode(b))))
}

/// Final function of both aggregates: the sketch's stored bytes (NULL over no rows).
#[pg_extern(immutable, parallel_safe)]
fn sketch_final(state: Option<Internal>) -> Option<Vec<u8>> {
    sketch_serialize(state)
}

// ---- reading stored sketches ---------------------------------------------------------------

/// The `q`-quantile (0..1) of a sketch's durations, within 1 % of the exact value, with
/// percentile_disc's rank rule.
#[pg_extern(immutable, parallel_safe, strict)]
fn sketch_quantile(sketch: &[u8], q: f64) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        error::invalid_argument("q", format!("{q} is not between 0 and 1"));
    }
    view(sketch)
        .quantile(q)
        .unwrap_or_else(|e| error::invalid_argument("sketch", e))
}

/// Merges two sketches (for ON CONFLICT updates of a stored bucket).
#[pg_extern(immutable, parallel_safe)]
fn sketch_merge(a: Option<&[u8]>, b: Option<&[u8]>) -> Option<Vec<u8>> {
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(decode(x).to_bytes()),
        (Some(x), Some(y)) => {
            let mut s = decode(x);
            s.merge(&decode(y));
            Some(s.to_bytes())
        }
    }
}

/// The readers of one figure of a sketch's counters, each a SQL function taking the sketch.
macro_rules! sketch_reader {
    ($($(#[$doc:meta])* fn $name:ident -> $ty:ty = |$c:ident| $read:expr;)*) => {$(
        $(#[$doc])*
        #[pg_extern(immutable, parallel_safe, strict)]
        fn $name(sketch: &[u8]) -> $ty {
            let $c = view(sketch).counters;
            $read
        }
    )*};
}

sketch_reader! {
    /// Requests counted in a sketch.
    fn sketch_count -> i64 = |c| c.count as i64;
    /// Requests with status >= 500 counted in a sketch.
    fn sketch_errors -> i64 = |c| c.errors as i64;
    /// Requests with cache_hit true counted in a sketch.
    fn sketch_cache_hits -> i64 = |c| c.cache_hits as i64;
    /// Requests with a known cache_hit (true or false) counted in a sketch.
    fn sketch_cache_lookups -> i64 = |c| c.cache_lookups as i64;
    /// The largest duration in a sketch (exact).
    fn sketch_max -> Option<f64> = |c| c.largest();
    /// The mean duration in a sketch (exact).
    fn sketch_mean -> Option<f64> = |c| c.mean();
}

// ---- the whole rollup in one aggregate ------------------------------------------------------

/// Transition of request_rollup(), run once per raw row of a fold: counts the row in its
/// (endpoint, 5-minute) group. Written against fcinfo directly, because pgrx's per-argument
/// conversions and its guarded calls into PostgreSQL (detoasting the endpoint, switching memory
/// contexts) cost as much per row as the counting itself. The arguments are read as PostgreSQL
/// lays them out (timestamptz, float8, int4 and bool by value; text as a varlena, detoasted through
/// PostgreSQL only when it is compressed or out of line). Declared in SQL below.
// SAFETY: the exported symbol is named after this function, a name no other library in the
// process exports; PostgreSQL calls it only as the C function request_rollup_trans declared below, with that
// function's fcinfo (6 arguments of the declared types).
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn request_rollup_trans_raw(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    use pgrx::fcinfo::{pg_arg_is_null, pg_getarg_datum_raw};
    // SAFETY: fcinfo has the 6 arguments of the SQL declaration, each read only when not NULL:
    // 0 the state (`new_state`'s Rollup from an earlier row of this aggregate, see `state_of`),
    // 1 a timestamptz and 3 a float8 by value (8-byte datums on 64-bit builds), 2 a text
    // varlena (`text_bytes`), 4 an int4 and 5 a bool by value. The endpoint's bytes are valid
    // UTF-8 unchecked only in a UTF-8 database, where PostgreSQL has verified every text value.
    unsafe {
        let p: *mut Rollup = if pg_arg_is_null(fcinfo, 0) {
            // A backend stays in one database: its encoding is known from the first state on.
            DATABASE_IS_UTF8.store(
                pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32,
                std::sync::atomic::Ordering::Relaxed,
            );
            new_state(fcinfo, Rollup::new())
        } else {
            pg_getarg_datum_raw(fcinfo, 0).cast_mut_ptr::<Rollup>()
        };
        if !pg_arg_is_null(fcinfo, 1) && !pg_arg_is_null(fcinfo, 2) && !pg_arg_is_null(fcinfo, 3) {
            let micros = pg_getarg_datum_raw(fcinfo, 1).value() as i64;
            let endpoint = text_bytes(pg_getarg_datum_raw(fcinfo, 2));
            // PostgreSQL has validated text in a UTF-8 database; elsewhere check it.
            let endpoint = if DATABASE_IS_UTF8.load(std::sync::atomic::Ordering::Relaxed) {
                std::str::from_utf8_unchecked(endpoint)
            } else {
                std::str::from_utf8(endpoint)
                    .unwrap_or_else(|_| error::invalid_argument("endpoint", "not valid UTF-8"))
            };
            if micros == i64::MAX || micros == i64::MIN {
                error::invalid_argument("created_at", "must be a finite time, not infinity");
            }
            let duration =
                finite_duration(f64::from_bits(pg_getarg_datum_raw(fcinfo, 3).value() as u64));
            let status =
                (!pg_arg_is_null(fcinfo, 4)).then(|| pg_getarg_datum_raw(fcinfo, 4).value() as i32);
            let hit = (!pg_arg_is_null(fcinfo, 5))
                .then(|| pg_getarg_datum_raw(fcinfo, 5).value() & 0xff != 0);
            (*p).add(micros, endpoint, duration, status, hit);
        }
        pg_sys::Datum::from(p)
    }
}

static DATABASE_IS_UTF8: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The bytes of a text datum: read in place when it is stored inline and uncompressed (what
/// a heap tuple's short text always is), else detoasted by PostgreSQL.
///
/// # Safety
/// `d` is a non-NULL text (or other varlena) datum of the current call; the bytes live as long
/// as the datum's memory, at least until the call returns.
#[inline]
unsafe fn text_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    let mut v = d.cast_mut_ptr::<pg_sys::varlena>();
    // SAFETY: a varlena (the caller's promise). Out of line (1-byte external header) or compressed
    // values are detoasted by PostgreSQL into a plain copy in the current memory context; the
    // others are read in place. pgrx's helpers read the header as this platform lays it out.
    unsafe {
        if pgrx::varatt_is_1b_e(v) || pgrx::varatt_is_4b_c(v) {
            v = pg_sys::pg_detoast_datum_packed(v);
        }
        std::slice::from_raw_parts(
            pgrx::vardata_any(v) as *const u8,
            pgrx::varsize_any_exhdr(v),
        )
    }
}

/// The function-info record PostgreSQL looks up for a version-1 C function.
// SAFETY: the name PostgreSQL's fmgr looks up for request_rollup_trans_raw (pg_finfo_ + its
// name), unique in the process; it returns a pointer to a static record.
#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_request_rollup_trans_raw() -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
}

pgrx::extension_sql!(
    "CREATE FUNCTION @extschema@.request_rollup_trans(internal, timestamptz, text, double precision, integer, boolean) \
     RETURNS internal LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'request_rollup_trans_raw';",
    name = "request_rollup_trans",
);

/// Combine function of request_rollup().
#[pg_extern(immutable, parallel_safe)]
fn rollup_combine(
    a: Option<Internal>,
    b: Option<Internal>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<Internal> {
    combine::<Rollup>(a, b, fcinfo)
}

fn decode_rollup(bytes: &[u8]) -> Rollup {
    Rollup::from_bytes(bytes).unwrap_or_else(|e| error::invalid_argument("rollup", e))
}

/// Final function of request_rollup(): its rows, each sketch in stored form.
#[pg_extern(immutable, parallel_safe)]
fn rollup_final(state: Option<Internal>) -> Option<Vec<u8>> {
    state_of::<Rollup>(state).map(|p| p.to_row_bytes())
}

/// Serialization of request_rollup()'s state.
#[pg_extern(immutable, parallel_safe)]
fn rollup_serialize(state: Option<Internal>) -> Option<Vec<u8>> {
    state_of::<Rollup>(state).map(|p| p.to_bytes())
}

/// Deserialization of request_rollup().
#[pg_extern(immutable, parallel_safe, strict)]
fn rollup_deserialize(
    bytes: Option<&[u8]>,
    _unused: Option<Internal>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<Internal> {
    bytes.map(|b| into_internal(new_state(fcinfo, decode_rollup(b))))
}

/// The figures stored beside a sketch in performance_analytics_5min: requests, errors, err_rate,
/// p50, p95, p99, max, avg, cache_hits, cache_hit_rate_percent.
type Stats = (
    i64,
    i64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    i64,
    Option<f64>,
);

fn stats_of(bytes: &[u8]) -> Stats {
    let v = view(bytes);
    let q = |x: f64| {
        v.quantile(x)
            .unwrap_or_else(|e| error::invalid_argument("sketch", e))
    };
    let c = v.counters;
    (
        c.count as i64,
        c.errors as i64,
        c.error_rate(),
        q(0.5),
        q(0.95),
        q(0.99),
        c.largest(),
        c.mean(),
        c.cache_hits as i64,
        c.cache_hit_rate_percent(),
    )
}

/// The figures of one sketch as performance_analytics_5min stores them beside it.
#[allow(clippy::type_complexity)]
#[pg_extern(immutable, parallel_safe, strict)]
fn sketch_stats(
    sketch: &[u8],
) -> TableIterator<
    'static,
    (
        name!(requests, i64),
        name!(errors, i64),
        name!(err_rate, Option<f64>),
        name!(p50_ms, Option<f64>),
        name!(p95_ms, Option<f64>),
        name!(p99_ms, Option<f64>),
        name!(max_ms, Option<f64>),
        name!(avg_ms, Option<f64>),
        name!(cache_hits, i64),
        name!(cache_hit_rate_percent, Option<f64>),
    ),
> {
    TableIterator::once(stats_of(sketch))
}

/// The rows of a request_rollup() result: one per 5-minute bucket and endpoint, plus one per
/// bucket for all endpoints (endpoint NULL), each with its sketch and the figures stored beside it.
#[allow(clippy::type_complexity)]
#[pg_extern(immutable, parallel_safe, strict)]
fn rollup_rows(
    rollup: &[u8],
) -> TableIterator<
    'static,
    (
        name!(bucket, TimestampWithTimeZone),
        name!(endpoint, Option<String>),
        name!(sketch, Vec<u8>),
        name!(requests, i64),
        name!(errors, i64),
        name!(err_rate, Option<f64>),
        name!(p50_ms, Option<f64>),
        name!(p95_ms, Option<f64>),
        name!(p99_ms, Option<f64>),
        name!(max_ms, Option<f64>),
        name!(avg_ms, Option<f64>),
        name!(cache_hits, i64),
        name!(cache_hit_rate_percent, Option<f64>),
    ),
> {
    let rows: Vec<_> = Rollup::rows_of(rollup)
        .unwrap_or_else(|e| error::invalid_argument("rollup", e))
        .into_iter()
        .filter_map(|(slot, endpoint, sketch)| {
            let micros = slot.checked_mul(runbook_core::rollup::SLOT_MICROS)?;
            let bucket = TimestampWithTimeZone::try_from(micros).ok()?;
            let (a, b, c, d, e, f, g, h, i, j) = stats_of(sketch);
            Some((
                bucket,
                endpoint.map(str::to_owned),
                sketch.to_vec(),
                a,
                b,
                c,
                d,
                e,
                f,
                g,
                h,
                i,
                j,
            ))
        })
        .collect();
    TableIterator::new(rows)
}

pgrx::extension_sql_file!(
    "../../sql/sketch.sql",
    name = "sketch",
    requires = [
        request_sketch_trans,
        sketch_union_trans,
        sketch_combine,
        sketch_serialize,
        sketch_deserialize,
        sketch_final,
        sketch_quantile,
        sketch_merge,
        sketch_count,
        sketch_errors,
        sketch_cache_hits,
        sketch_cache_lookups,
        sketch_max,
        sketch_mean,
        "request_rollup_trans",
        rollup_combine,
        rollup_serialize,
        rollup_deserialize,
        rollup_final,
        rollup_rows,
        sketch_stats,
    ]
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// The transition reads text in place when it is short and through PostgreSQL when it is
    /// compressed or out of line; rows missing a time, endpoint or duration are skipped.
    #[pg_test]
    fn rollup_reads_long_compressed_endpoints_and_skips_rows_missing_a_key() {
        Spi::run(
            "CREATE TEMP TABLE raw_rows (at timestamptz, endpoint text, d float8); \
             INSERT INTO raw_rows VALUES \
               ('2024-01-01 00:01', '/short', 10), ('2024-01-01 00:02', repeat('/long', 2000), 20), \
               ('2024-01-01 00:03', repeat('/long', 2000), 30), ('2024-01-01 00:04', NULL, 40), \
               (NULL, '/short', 50), ('2024-01-01 00:06', '/short', NULL)",
        )
        .unwrap();
        let shape = Spi::get_one::<String>(
            "SELECT string_agg(coalesce(left(x.endpoint, 10), 'ALL') || ':' || x.requests || ':' || x.max_ms, ' ' \
                               ORDER BY x.bucket, x.endpoint NULLS LAST) \
             FROM (SELECT request_rollup(at, endpoint, d, 200, NULL) AS r FROM raw_rows) s, rollup_rows(s.r) x",
        );
        assert_eq!(
            shape,
            Ok(Some("/long/long:2:30 /short:1:10 ALL:3:30".to_string()))
        );
    }
}
