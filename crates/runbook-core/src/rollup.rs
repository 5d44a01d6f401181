//! A whole rollup in one aggregate state: a sketch per (endpoint, 5-minute slot). Grouping inside
//! the aggregate (a small map per endpoint) costs far less per raw row than PostgreSQL hashing a
//! (date_bin(...), endpoint) key, which is what makes a 10-million-row fold fast.

use crate::sketch::{DecodeError, Sketch};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hasher (as rustc's FxHash): the keys are our own slots and endpoint names,
/// so SipHash's flooding resistance buys nothing and costs a third of a transition.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Serialized form's first byte.
pub const FORMAT_VERSION: u8 = 1;
/// Microseconds in a 5-minute bucket.
pub const SLOT_MICROS: i64 = 300_000_000;

#[derive(Debug, Default, Clone)]
pub struct Rollup {
    by_endpoint: FxMap<String, FxMap<i64, Sketch>>,
}

/// One output row: slot (5-minute buckets since the epoch of the timestamps given), endpoint
/// (None for the all-endpoints row), sketch.
pub type RollupRow = (i64, Option<String>, Sketch);

impl Rollup {
    pub fn new() -> Self {
        Rollup::default()
    }

    /// Counts one request at `micros` (any epoch aligned to 5 minutes).
    #[inline]
    pub fn add(
        &mut self,
        micros: i64,
        endpoint: &str,
        duration_ms: f64,
        status_code: Option<i32>,
        cache_hit: Option<bool>,
    ) {
        let slot = micros.div_euclid(SLOT_MICROS);
        let slots = match self.by_endpoint.get_mut(endpoint) {
            Some(s) => s,
            None => self.by_endpoint.entry(endpoint.to_string()).or_default(),
        };
        slots
            .entry(slot)
            .or_default()
            .add_request(duration_ms, status_code, cache_hit);
    }

    pub fn merge(&mut self, other: &Rollup) {
        for (endpoint, slots) in &other.by_endpoint {
            let mine = self.by_endpoint.entry(endpoint.clone()).or_default();
            for (slot, sketch) in slots {
                mine.entry(*slot).or_default().merge(sketch);
            }
        }
    }

    /// Rows per (slot, endpoint), plus one all-endpoints row per slot, ordered by slot then
    /// endpoint (all-endpoints last).
    pub fn rows(&self) -> Vec<RollupRow> {
        let mut all: HashMap<i64, Sketch> = HashMap::new();
        let mut out: Vec<RollupRow> = Vec::new();
        for (endpoint, slots) in &self.by_endpoint {
            for (slot, sketch) in slots {
                all.entry(*slot).or_default().merge(sketch);
                out.push((*slot, Some(endpoint.clone()), sketch.clone()));
            }
        }
        out.extend(all.into_iter().map(|(slot, s)| (slot, None, s)));
        out.sort_by(|a, b| (a.0, a.1.is_none(), &a.1).cmp(&(b.0, b.1.is_none(), &b.1)));
        out
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        let n: usize = self.by_endpoint.values().map(|s| s.len()).sum();
        out.extend_from_slice(&(n as u64).to_le_bytes());
        for (endpoint, slots) in &self.by_endpoint {
            for (slot, sketch) in slots {
                out.extend_from_slice(&(endpoint.len() as u32).to_le_bytes());
                out.extend_from_slice(endpoint.as_bytes());
                out.extend_from_slice(&slot.to_le_bytes());
                let bytes = sketch.to_bytes();
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Rollup, DecodeError> {
        fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
            if input.len() < n {
                return Err(DecodeError::Truncated);
            }
            let (head, rest) = input.split_at(n);
            *input = rest;
            Ok(head)
        }
        fn u32_of(input: &mut &[u8]) -> Result<usize, DecodeError> {
            let b = take(input, 4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        fn i64_of(input: &mut &[u8]) -> Result<i64, DecodeError> {
            let b = take(input, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(i64::from_le_bytes(a))
        }
        let (&version, mut rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let n = i64_of(&mut rest)? as u64;
        let mut r = Rollup::new();
        for _ in 0..n {
            let len = u32_of(&mut rest)?;
            let endpoint = String::from_utf8_lossy(take(&mut rest, len)?).into_owned();
            let slot = i64_of(&mut rest)?;
            let len = u32_of(&mut rest)?;
            let sketch = Sketch::from_bytes(take(&mut rest, len)?)?;
            r.by_endpoint
                .entry(endpoint)
                .or_default()
                .insert(slot, sketch);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_group_by_slot_and_endpoint_with_an_all_endpoints_row() {
        let mut r = Rollup::new();
        r.add(0, "/a", 10.0, Some(200), None);
        r.add(SLOT_MICROS - 1, "/b", 20.0, Some(500), Some(true));
        r.add(SLOT_MICROS, "/a", 30.0, Some(200), Some(false));
        let rows = r.rows();
        let shape: Vec<(i64, Option<&str>, u64)> = rows
            .iter()
            .map(|(s, e, k)| (*s, e.as_deref(), k.count))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, Some("/a"), 1),
                (0, Some("/b"), 1),
                (0, None, 2),
                (1, Some("/a"), 1),
                (1, None, 1)
            ]
        );
        assert_eq!(rows[2].2.errors, 1);
    }

    #[test]
    fn negative_times_fall_in_the_bucket_below() {
        let mut r = Rollup::new();
        r.add(-1, "/a", 1.0, None, None);
        assert_eq!(r.rows()[0].0, -1);
    }

    #[test]
    fn merge_and_serialization_keep_every_count() {
        let mut a = Rollup::new();
        let mut b = Rollup::new();
        for i in 0..1000i64 {
            let target = if i % 2 == 0 { &mut a } else { &mut b };
            target.add(
                i * 1_000_000,
                if i % 3 == 0 { "/x" } else { "/y" },
                i as f64,
                Some(200),
                None,
            );
        }
        a.merge(&Rollup::from_bytes(&b.to_bytes()).unwrap());
        let total: u64 = a
            .rows()
            .iter()
            .filter(|r| r.1.is_none())
            .map(|r| r.2.count)
            .sum();
        assert_eq!(total, 1000);
        assert_eq!(
            Rollup::from_bytes(&[7]).err(),
            Some(DecodeError::UnknownVersion(7))
        );
    }
}
