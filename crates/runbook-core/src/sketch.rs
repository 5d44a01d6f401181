//! A DDSketch-style logarithmic histogram: values are counted in buckets whose bounds grow by a
//! factor `gamma = (1 + a) / (1 - a)`, so any quantile is answered within relative error `a` (1 %)
//! of the exact value, sketches of different buckets merge by adding counts, and the size grows
//! with the logarithm of the value range, not with the number of values.
//!
//! Alongside the histogram the sketch keeps the request counters a 5-minute rollup needs (count,
//! sum, min, max, errors, cache hits), so one aggregate pass over raw rows produces everything.

/// Relative accuracy of every quantile.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// First byte of every serialized sketch; a later format gets a new number and readers of old rows.
pub const FORMAT_VERSION: u8 = 1;
/// Values at or below this (milliseconds) are counted as zero.
const MIN_VALUE: f64 = 1e-6;

/// The request counters kept beside the histogram; the rollup's groups, sketches and stored
/// sketches read in place all carry them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counters {
    pub count: u64,
    /// Values counted as zero (at or below `MIN_VALUE`), outside the bins.
    pub zeros: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Requests with status >= 500.
    pub errors: u64,
    /// Requests with cache_hit true, and with cache_hit known (not NULL).
    pub cache_hits: u64,
    pub cache_lookups: u64,
}

impl Counters {
    pub const EMPTY: Counters = Counters {
        count: 0,
        zeros: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        errors: 0,
        cache_hits: 0,
        cache_lookups: 0,
    };

    /// Counts one value; `zero` says it fell at or below `MIN_VALUE` (no bin).
    #[inline]
    pub fn add(&mut self, value: f64, zero: bool) {
        self.zeros += zero as u64;
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Counts a request's status code and cache outcome (its duration goes through `add`).
    #[inline]
    pub fn add_outcome(&mut self, status_code: Option<i32>, cache_hit: Option<bool>) {
        self.errors += status_code.is_some_and(|s| s >= 500) as u64;
        if let Some(hit) = cache_hit {
            self.cache_lookups += 1;
            self.cache_hits += hit as u64;
        }
    }

    pub fn merge(&mut self, other: &Counters) {
        self.count += other.count;
        self.zeros += other.zeros;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.errors += other.errors;
        self.cache_hits += other.cache_hits;
        self.cache_lookups += other.cache_lookups;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The largest value counted, `None` when nothing was.
    pub fn largest(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.count > 0).then(|| self.errors as f64 / self.count as f64)
    }

    pub fn cache_hit_rate_percent(&self) -> Option<f64> {
        (self.cache_lookups > 0).then(|| self.cache_hits as f64 * 100.0 / self.cache_lookups as f64)
    }

    /// The `q`-quantile over these counters and the bin counts from bin `offset`, with the rank
    /// rule of `percentile_disc`: the value at position ceil(q * count) in ascending order. `None`
    /// for an empty sketch or q outside 0..1.
    fn quantile<E>(
        &self,
        q: f64,
        offset: i32,
        bins: impl Iterator<Item = Result<u64, E>>,
    ) -> Result<Option<f64>, E> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return Ok(None);
        }
        let rank = ((q * self.count as f64).ceil() as u64).max(1); // 1-based
        if rank <= self.zeros {
            return Ok(Some(self.min.max(0.0)));
        }
        let mut seen = self.zeros;
        for (i, n) in bins.enumerate() {
            seen += n?;
            if seen >= rank {
                let v = Sketch::value_of(offset + i as i32);
                return Ok(Some(v.clamp(self.min, self.max)));
            }
        }
        Ok(Some(self.max))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    /// Index of `bins[0]`.
    offset: i32,
    bins: Vec<u64>,
    pub counters: Counters,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new()
    }
}

fn ln_gamma() -> f64 {
    ((1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)).ln()
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownVersion(u8),
    Truncated,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty sketch"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown sketch format version {v}"),
            DecodeError::Truncated => write!(f, "truncated sketch"),
        }
    }
}

impl Sketch {
    pub fn new() -> Self {
        Sketch {
            offset: 0,
            bins: Vec::new(),
            counters: Counters::EMPTY,
        }
    }

    #[inline]
    fn index_of(value: f64) -> i32 {
        (value.ln() / ln_gamma()).ceil() as i32
    }

    /// The histogram bin a value falls in, or `None` for values counted as zero.
    #[inline]
    pub fn bin_of(value: f64) -> Option<i32> {
        (value > MIN_VALUE).then(|| Self::index_of(value))
    }

    /// A sketch from counters and a run of bin counts starting at bin `offset` (the rollup's
    /// accumulator hands its groups over this way).
    pub fn from_parts(offset: i32, bins: Vec<u64>, counters: Counters) -> Sketch {
        Sketch {
            offset,
            bins,
            counters,
        }
    }

    /// The bin counts: the index of the first, and the run.
    pub fn bins(&self) -> (i32, &[u64]) {
        (self.offset, &self.bins)
    }

    /// Makes room for bins `lo..=hi` at once (merges would otherwise grow one bin at a time).
    fn reserve_range(&mut self, lo: i32, hi: i32) {
        if self.bins.is_empty() {
            self.offset = lo;
            self.bins = vec![0; (hi - lo + 1) as usize];
            return;
        }
        if lo < self.offset {
            let grow = (self.offset - lo) as usize;
            let mut bins = vec![0u64; grow + self.bins.len()];
            bins[grow..].copy_from_slice(&self.bins);
            self.bins = bins;
            self.offset = lo;
        }
        let need = (hi - self.offset + 1) as usize;
        if need > self.bins.len() {
            self.bins.resize(need, 0);
        }
    }

    /// Adds a run of bin counts starting at bin `offset`.
    pub fn merge_counts<T: Copy + Into<u64>>(&mut self, offset: i32, counts: &[T]) {
        if counts.is_empty() {
            return;
        }
        self.reserve_range(offset, offset + counts.len() as i32 - 1);
        let at = (offset - self.offset) as usize;
        for (b, &n) in self.bins[at..at + counts.len()].iter_mut().zip(counts) {
            *b += n.into();
        }
    }

    /// The value reported for bucket `i`: the point whose relative distance to both bounds
    /// (gamma^(i-1), gamma^i] is the same, at most `RELATIVE_ACCURACY`.
    fn value_of(index: i32) -> f64 {
        let gamma = ln_gamma().exp();
        2.0 * gamma.powi(index) / (gamma + 1.0)
    }

    /// Counts one request. Durations must be finite and non-negative (the ingest functions check).
    #[inline]
    pub fn add(&mut self, value: f64) {
        let bin = Self::bin_of(value);
        if let Some(i) = bin {
            self.merge_counts(i, &[1u64]);
        }
        self.counters.add(value, bin.is_none());
    }

    /// Counts one request with its status code and cache outcome.
    #[inline]
    pub fn add_request(
        &mut self,
        duration_ms: f64,
        status_code: Option<i32>,
        cache_hit: Option<bool>,
    ) {
        self.add(duration_ms);
        self.counters.add_outcome(status_code, cache_hit);
    }

    /// Adds another sketch's counts to this one.
    pub fn merge(&mut self, other: &Sketch) {
        self.merge_counts(other.offset, &other.bins);
        self.counters.merge(&other.counters);
    }

    /// The `q`-quantile (0..1) with the rank rule of `percentile_disc`: the value at position
    /// ceil(q * count) in ascending order. `None` for an empty sketch or q outside 0..1.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let bins = self.bins.iter().map(|&n| Ok::<u64, DecodeError>(n));
        self.counters.quantile(q, self.offset, bins).unwrap_or(None)
    }

    /// Compact bytes: version byte, then varints and the f64 sum/min/max; bins as a run from
    /// `offset`, each count a varint (one byte for counts below 128).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.bins.len());
        out.push(FORMAT_VERSION);
        let c = &self.counters;
        put_varint(&mut out, c.count);
        put_varint(&mut out, c.zeros);
        put_varint(&mut out, c.errors);
        put_varint(&mut out, c.cache_hits);
        put_varint(&mut out, c.cache_lookups);
        out.extend_from_slice(&c.sum.to_le_bytes());
        out.extend_from_slice(&c.min.to_le_bytes());
        out.extend_from_slice(&c.max.to_le_bytes());
        // Trim empty bins at both ends.
        let first = self.bins.iter().position(|&n| n > 0);
        match first {
            None => put_varint(&mut out, 0),
            Some(first) => {
                let last = self.bins.iter().rposition(|&n| n > 0).unwrap_or(first);
                put_varint(&mut out, (last - first + 1) as u64);
                put_varint(&mut out, zigzag(self.offset + first as i32));
                for &n in &self.bins[first..=last] {
                    put_varint(&mut out, n);
                }
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Sketch, DecodeError> {
        SketchView::parse(bytes)?.to_sketch()
    }
}

/// A stored sketch read in place: the counters, and the bin counts left encoded, so reading one
/// figure (a count, a quantile) allocates nothing and decodes no more than it needs.
#[derive(Debug, Clone, Copy)]
pub struct SketchView<'a> {
    pub counters: Counters,
    nbins: usize,
    offset: i32,
    bins: &'a [u8],
}

impl<'a> SketchView<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<SketchView<'a>, DecodeError> {
        let (&version, mut rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let count = get_varint(&mut rest)?;
        let zeros = get_varint(&mut rest)?;
        let errors = get_varint(&mut rest)?;
        let cache_hits = get_varint(&mut rest)?;
        let cache_lookups = get_varint(&mut rest)?;
        let sum = get_f64(&mut rest)?;
        let min = get_f64(&mut rest)?;
        let max = get_f64(&mut rest)?;
        let nbins = get_varint(&mut rest)? as usize;
        let mut offset = 0;
        if nbins > 0 {
            offset = unzigzag(get_varint(&mut rest)?);
            if nbins > rest.len() {
                return Err(DecodeError::Truncated);
            }
        }
        Ok(SketchView {
            counters: Counters {
                count,
                zeros,
                sum,
                min,
                max,
                errors,
                cache_hits,
                cache_lookups,
            },
            nbins,
            offset,
            bins: rest,
        })
    }

    /// The bin counts, decoded one by one.
    fn bins(&self) -> impl Iterator<Item = Result<u64, DecodeError>> + 'a {
        let mut rest = self.bins;
        (0..self.nbins).map(move |_| get_varint(&mut rest))
    }

    /// The same as `Sketch::quantile`.
    pub fn quantile(&self, q: f64) -> Result<Option<f64>, DecodeError> {
        self.counters.quantile(q, self.offset, self.bins())
    }

    pub fn to_sketch(&self) -> Result<Sketch, DecodeError> {
        let bins = self.bins().collect::<Result<Vec<u64>, _>>()?;
        Ok(Sketch::from_parts(self.offset, bins, self.counters))
    }
}

fn zigzag(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn unzigzag(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let (&b, rest) = input.split_first().ok_or(DecodeError::Truncated)?;
        *input = rest;
        if shift > 63 {
            return Err(DecodeError::Truncated);
        }
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
    }
}

fn get_f64(input: &mut &[u8]) -> Result<f64, DecodeError> {
    if input.len() < 8 {
        return Err(DecodeError::Truncated);
    }
    let (head, rest) = input.split_at(8);
    *input = rest;
    let mut b = [0u8; 8];
    b.copy_from_slice(head);
    Ok(f64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) so the property test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Log-normal-ish durations between ~0.1 ms and ~100 s.
        fn duration(&mut self) -> f64 {
            let u = self.next_f64().max(1e-12);
            let v = self.next_f64();
            let normal = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            (4.0 + 1.5 * normal).exp()
        }
    }

    fn exact_disc(sorted: &[f64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn quantiles_are_within_one_percent_of_exact_ones() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let n = 1 + (seed as usize * 997) % 5000;
            let mut values: Vec<f64> = (0..n).map(|_| rng.duration()).collect();
            let mut s = Sketch::new();
            values.iter().for_each(|&v| s.add(v));
            values.sort_by(|a, b| a.partial_cmp(b).unwrap());
            for q in [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let exact = exact_disc(&values, q);
                let got = s.quantile(q).unwrap();
                assert!(
                    (got - exact).abs() <= RELATIVE_ACCURACY * exact + 1e-9,
                    "seed {seed} n {n} q {q}: sketch {got} exact {exact}"
                );
            }
        }
    }

    #[test]
    fn merged_sketches_answer_like_one_sketch_over_all_values() {
        let mut rng = Rng(42);
        let mut all = Sketch::new();
        let mut parts = vec![Sketch::new(), Sketch::new(), Sketch::new()];
        for i in 0..3000 {
            let v = rng.duration();
            all.add(v);
            parts[i % 3].add(v);
        }
        let mut merged = Sketch::new();
        parts.iter().for_each(|p| merged.merge(p));
        assert_eq!(merged.counters.count, all.counters.count);
        for q in [0.5, 0.95, 0.99] {
            assert_eq!(merged.quantile(q), all.quantile(q));
        }
    }

    #[test]
    fn serialization_round_trips_and_starts_with_the_version() {
        let mut s = Sketch::new();
        for (i, v) in [0.0, 0.5, 12.0, 250.0, 2500.0, 30_000.0].iter().enumerate() {
            s.add_request(
                *v,
                Some(if i % 2 == 0 { 200 } else { 503 }),
                Some(i % 3 == 0),
            );
        }
        let bytes = s.to_bytes();
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back = Sketch::from_bytes(&bytes).unwrap();
        assert_eq!(back.quantile(0.5), s.quantile(0.5));
        let c = back.counters;
        assert_eq!(
            (c.count, c.errors, c.cache_hits, c.cache_lookups),
            (6, 3, 2, 6)
        );
        assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn a_sketch_of_a_bucket_is_small() {
        let mut rng = Rng(7);
        let mut s = Sketch::new();
        (0..100_000).for_each(|_| s.add(rng.duration()));
        assert!(s.to_bytes().len() < 2_000, "{} bytes", s.to_bytes().len());
    }

    #[test]
    fn unknown_versions_and_truncation_are_errors_not_panics() {
        assert_eq!(Sketch::from_bytes(&[]), Err(DecodeError::Empty));
        assert_eq!(
            Sketch::from_bytes(&[9, 1]),
            Err(DecodeError::UnknownVersion(9))
        );
        let bytes = Sketch::new().to_bytes();
        assert_eq!(
            Sketch::from_bytes(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn empty_sketch_has_no_quantile() {
        assert_eq!(Sketch::new().quantile(0.5), None);
    }
}
