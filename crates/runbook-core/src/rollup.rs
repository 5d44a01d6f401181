//! A whole rollup in one aggregate state: a sketch per (endpoint, 5-minute slot). Grouping inside
//! the aggregate costs far less per raw row than PostgreSQL hashing a (date_bin(...), endpoint)
//! key, which is what makes a 10-million-row fold fast. Per row: the endpoint's id (one small
//! hash lookup), then that endpoint's current group (rows come mostly in time order, so usually
//! no lookup at all), then one bin increment. Each group counts in 32-bit bins over the range
//! its values occupy (about 0.8 KB for 250 log-normal values instead of 3 KB of 64-bit bins), so
//! the 40,000 groups of a week stay compact; the final value carries every row's sketch already
//! in stored form, so expanding it into rows decodes nothing.

use crate::sketch::{Counters, DecodeError, Sketch};
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

/// Serialized state's first byte (the state is transient: only parallel workers exchange it).
pub const FORMAT_VERSION: u8 = 2;
/// First byte of the aggregate's final value, the rows `rollup_rows()` returns.
pub const ROWS_FORMAT_VERSION: u8 = 0x52;
/// Microseconds in a 5-minute bucket.
pub const SLOT_MICROS: i64 = 300_000_000;
/// Bins added beyond the range a group needs when it grows, so a group grows a few times only.
const BIN_SLACK: i32 = 16;

/// One (endpoint, slot) group while rows are counted: the sketch's counters, with 32-bit bin
/// counts over the occupied range only (a count that would pass u32::MAX spills into `spilled`),
/// so the groups of a large fold stay small and close together in memory.
#[derive(Debug, Clone)]
struct Group {
    slot: i64,
    endpoint: u32,
    offset: i32,
    bins: Vec<u32>,
    spilled: Vec<(i32, u64)>,
    counters: Counters,
}

impl Group {
    fn new(slot: i64, endpoint: u32) -> Group {
        Group {
            slot,
            endpoint,
            offset: 0,
            bins: Vec::new(),
            spilled: Vec::new(),
            counters: Counters::EMPTY,
        }
    }

    /// Makes bins `lo..=hi` addressable, with slack on the side that grew.
    #[cold]
    fn grow(&mut self, lo: i32, hi: i32) {
        if self.bins.is_empty() {
            self.offset = lo - BIN_SLACK;
            self.bins = vec![0; (hi - lo + 1 + 2 * BIN_SLACK) as usize];
            return;
        }
        let end = self.offset + self.bins.len() as i32; // exclusive
        let new_lo = if lo < self.offset {
            lo - BIN_SLACK
        } else {
            self.offset
        };
        let new_end = if hi >= end { hi + 1 + BIN_SLACK } else { end };
        let mut bins = vec![0u32; (new_end - new_lo) as usize];
        let at = (self.offset - new_lo) as usize;
        bins[at..at + self.bins.len()].copy_from_slice(&self.bins);
        self.bins = bins;
        self.offset = new_lo;
    }

    #[inline]
    fn add_to_bin(&mut self, index: i32, n: u32) {
        let mut at = index.wrapping_sub(self.offset) as u32 as usize;
        if at >= self.bins.len() {
            self.grow(index, index);
            at = (index - self.offset) as usize;
        }
        let b = &mut self.bins[at];
        match b.checked_add(n) {
            Some(v) => *b = v,
            None => {
                self.spilled.push((index, *b as u64 + n as u64));
                *b = 0;
            }
        }
    }

    #[inline]
    fn add(&mut self, value: f64, status_code: Option<i32>, cache_hit: Option<bool>) {
        let bin = Sketch::bin_of(value);
        if let Some(i) = bin {
            self.add_to_bin(i, 1);
        }
        self.counters.add(value, bin.is_none());
        self.counters.add_outcome(status_code, cache_hit);
    }

    fn occupied(&self) -> Option<(usize, usize)> {
        let first = self.bins.iter().position(|&n| n > 0)?;
        let last = self.bins.iter().rposition(|&n| n > 0)?;
        Some((first, last))
    }

    fn merge(&mut self, other: &Group) {
        if let Some((first, last)) = other.occupied() {
            let lo = other.offset + first as i32;
            let hi = other.offset + last as i32;
            let end = self.offset + self.bins.len() as i32;
            if self.bins.is_empty() || lo < self.offset || hi >= end {
                self.grow(lo, hi);
            }
            for (i, &n) in other.bins[first..=last].iter().enumerate() {
                if n > 0 {
                    self.add_to_bin(lo + i as i32, n);
                }
            }
        }
        self.spilled.extend_from_slice(&other.spilled);
        self.counters.merge(&other.counters);
    }

    /// Adds this group into a sketch (the all-endpoints row of its slot).
    fn to_sketch(&self) -> Sketch {
        let mut s = Sketch::from_parts(0, Vec::new(), self.counters);
        if let Some((first, last)) = self.occupied() {
            s.merge_counts(self.offset + first as i32, &self.bins[first..=last]);
        }
        for &(i, n) in &self.spilled {
            s.merge_counts(i, &[n]);
        }
        s
    }
}

#[derive(Debug, Default, Clone)]
pub struct Rollup {
    endpoints: Vec<String>,
    endpoint_ids: FxMap<String, u32>,
    /// Per endpoint id: the group rows of that endpoint went to last (rows come mostly in time
    /// order, so this usually answers without hashing).
    current: Vec<u32>,
    by_key: FxMap<(i64, u32), u32>,
    groups: Vec<Group>,
}

/// One output row: slot (5-minute buckets since the epoch of the timestamps given), endpoint
/// (None for the all-endpoints row), sketch.
pub type RollupRow = (i64, Option<String>, Sketch);

/// One row of the aggregate's final value: slot, endpoint, stored sketch bytes.
pub type StoredRow<'a> = (i64, Option<&'a str>, &'a [u8]);

impl Rollup {
    pub fn new() -> Self {
        Rollup::default()
    }

    #[cold]
    fn endpoint_id(&mut self, endpoint: &str) -> u32 {
        let id = self.endpoints.len() as u32;
        self.endpoints.push(endpoint.to_string());
        self.endpoint_ids.insert(endpoint.to_string(), id);
        self.current.push(u32::MAX);
        id
    }

    #[inline]
    fn group_of(&mut self, slot: i64, ep: u32) -> usize {
        let cur = self.current[ep as usize];
        if self
            .groups
            .get(cur as usize)
            .is_some_and(|g| g.slot == slot)
        {
            return cur as usize;
        }
        self.lookup_group(slot, ep)
    }

    fn lookup_group(&mut self, slot: i64, ep: u32) -> usize {
        let next = self.groups.len() as u32;
        let g = *self.by_key.entry((slot, ep)).or_insert(next);
        if g == next {
            self.groups.push(Group::new(slot, ep));
        }
        self.current[ep as usize] = g;
        g as usize
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
        let ep = match self.endpoint_ids.get(endpoint) {
            Some(&id) => id,
            None => self.endpoint_id(endpoint),
        };
        let g = self.group_of(slot, ep);
        self.groups[g].add(duration_ms, status_code, cache_hit);
    }

    pub fn merge(&mut self, other: &Rollup) {
        for g in &other.groups {
            let ep_name = &other.endpoints[g.endpoint as usize];
            let ep = match self.endpoint_ids.get(ep_name.as_str()) {
                Some(&id) => id,
                None => self.endpoint_id(ep_name),
            };
            let mine = self.lookup_group(g.slot, ep);
            self.groups[mine].merge(g);
        }
    }

    /// Rows per (slot, endpoint), plus one all-endpoints row per slot, ordered by slot then
    /// endpoint (all-endpoints last).
    pub fn rows(&self) -> Vec<RollupRow> {
        let mut order: Vec<u32> = (0..self.groups.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (ga, gb) = (&self.groups[a as usize], &self.groups[b as usize]);
            (ga.slot, &self.endpoints[ga.endpoint as usize])
                .cmp(&(gb.slot, &self.endpoints[gb.endpoint as usize]))
        });
        let mut out: Vec<RollupRow> = Vec::with_capacity(order.len() + order.len() / 8 + 1);
        let mut i = 0;
        while i < order.len() {
            let slot = self.groups[order[i] as usize].slot;
            let mut all = Sketch::new();
            while i < order.len() && self.groups[order[i] as usize].slot == slot {
                let g = &self.groups[order[i] as usize];
                let s = g.to_sketch();
                all.merge(&s);
                out.push((slot, Some(self.endpoints[g.endpoint as usize].clone()), s));
                i += 1;
            }
            out.push((slot, None, all));
        }
        out
    }

    /// The aggregate's final value: the rows of `rows()` with each sketch already in its stored
    /// form, so expanding them (`rows_of`) only slices bytes.
    pub fn to_row_bytes(&self) -> Vec<u8> {
        let rows = self.rows();
        let mut out = Vec::with_capacity(9 + rows.len() * 240);
        out.push(ROWS_FORMAT_VERSION);
        out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
        for (slot, endpoint, sketch) in &rows {
            out.extend_from_slice(&slot.to_le_bytes());
            match endpoint {
                Some(e) => {
                    out.extend_from_slice(&(e.len() as u32).to_le_bytes());
                    out.extend_from_slice(e.as_bytes());
                }
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
            let bytes = sketch.to_bytes();
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// The rows of a final value: (slot, endpoint, stored sketch bytes), without decoding sketches.
    pub fn rows_of(bytes: &[u8]) -> Result<Vec<StoredRow<'_>>, DecodeError> {
        let (&version, mut rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != ROWS_FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let n = u64_of(&mut rest)?;
        let mut out = Vec::with_capacity((n as usize).min(rest.len() / 16));
        for _ in 0..n {
            let slot = u64_of(&mut rest)? as i64;
            let len = u32_of(&mut rest)?;
            let endpoint = if len == u32::MAX as usize {
                None
            } else {
                Some(
                    std::str::from_utf8(take(&mut rest, len)?)
                        .map_err(|_| DecodeError::Truncated)?,
                )
            };
            let len = u32_of(&mut rest)?;
            out.push((slot, endpoint, take(&mut rest, len)?));
        }
        Ok(out)
    }

    /// The state as bytes (parallel workers hand it to the leader this way).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        out.extend_from_slice(&(self.groups.len() as u64).to_le_bytes());
        for g in &self.groups {
            let endpoint = &self.endpoints[g.endpoint as usize];
            out.extend_from_slice(&(endpoint.len() as u32).to_le_bytes());
            out.extend_from_slice(endpoint.as_bytes());
            out.extend_from_slice(&g.slot.to_le_bytes());
            let bytes = g.to_sketch().to_bytes();
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Rollup, DecodeError> {
        let (&version, mut rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let n = u64_of(&mut rest)?;
        let mut r = Rollup::new();
        for _ in 0..n {
            let len = u32_of(&mut rest)?;
            let endpoint = String::from_utf8_lossy(take(&mut rest, len)?).into_owned();
            let slot = u64_of(&mut rest)? as i64;
            let len = u32_of(&mut rest)?;
            let sketch = Sketch::from_bytes(take(&mut rest, len)?)?;
            let ep = match r.endpoint_ids.get(endpoint.as_str()) {
                Some(&id) => id,
                None => r.endpoint_id(&endpoint),
            };
            let g = r.lookup_group(slot, ep);
            r.groups[g].merge(&Group::from_sketch(slot, ep, &sketch));
        }
        Ok(r)
    }
}

impl Group {
    fn from_sketch(slot: i64, endpoint: u32, s: &Sketch) -> Group {
        let mut g = Group::new(slot, endpoint);
        let (offset, bins) = s.bins();
        for (i, &n) in bins.iter().enumerate() {
            let mut n = n;
            while n > 0 {
                let part = n.min(u32::MAX as u64) as u32;
                g.add_to_bin(offset + i as i32, part);
                n -= part as u64;
            }
        }
        g.counters = s.counters;
        g
    }
}

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

fn u64_of(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let b = take(input, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
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
            .map(|(s, e, k)| (*s, e.as_deref(), k.counters.count))
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
        assert_eq!(rows[2].2.counters.errors, 1);
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
            .map(|r| r.2.counters.count)
            .sum();
        assert_eq!(total, 1000);
        assert_eq!(
            Rollup::from_bytes(&[7]).err(),
            Some(DecodeError::UnknownVersion(7))
        );
    }

    #[test]
    fn final_rows_carry_stored_sketches_in_row_order() {
        let mut r = Rollup::new();
        for i in 0..500i64 {
            r.add(
                i * 2_000_000,
                ["/b", "/a"][(i % 2) as usize],
                1.0 + i as f64,
                Some(200),
                Some(true),
            );
        }
        let bytes = r.to_row_bytes();
        let rows = Rollup::rows_of(&bytes).unwrap();
        let expected = r.rows();
        assert_eq!(rows.len(), expected.len());
        for ((slot, ep, sketch), (s2, e2, k2)) in rows.iter().zip(&expected) {
            assert_eq!((*slot, ep.map(str::to_owned)), (*s2, e2.clone()));
            assert_eq!(*sketch, k2.to_bytes().as_slice());
        }
        assert_eq!(
            Rollup::rows_of(&bytes[..bytes.len() - 1]).err(),
            Some(DecodeError::Truncated)
        );
    }

    #[test]
    fn a_bin_count_past_u32_spills_instead_of_wrapping() {
        let mut g = Group::new(0, 0);
        g.add(10.0, None, None);
        let i = Sketch::bin_of(10.0).unwrap();
        g.add_to_bin(i, u32::MAX);
        g.add_to_bin(i, 5);
        let s = g.to_sketch();
        let (offset, bins) = s.bins();
        assert_eq!(offset, i);
        assert_eq!(bins, &[1u64 + u32::MAX as u64 + 5]);
    }

    #[test]
    fn groups_grow_on_both_sides_and_match_a_plain_sketch() {
        let mut r = Rollup::new();
        let mut plain = Sketch::new();
        for (k, v) in [50.0, 0.0, 3000.0, 0.2, 75.0, 1e6, 1e-3, 80.0]
            .iter()
            .enumerate()
        {
            r.add(k as i64, "/a", *v, Some(200), None);
            plain.add_request(*v, Some(200), None);
        }
        let rows = r.rows();
        assert_eq!(rows[0].2.to_bytes(), plain.to_bytes());
        assert_eq!(rows[1].2.to_bytes(), plain.to_bytes());
    }
}
