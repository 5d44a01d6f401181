//! Reading and writing the top level of a jsonb object in PostgreSQL's binary format, so that a
//! cached result can gain a few members per call without a round trip through jsonb text.
//!
//! The layout (PostgreSQL's `jsonb.h`): a varlena header, then a container header (member count
//! with the object flag), one `JEntry` per key and then one per value, then the keys' bytes and the
//! values' bytes in the same order. Keys are sorted by length, then bytewise. A `JEntry` holds a
//! type and the item's length, except every 32nd, which holds the end offset of its item instead.
//! Numerics and nested containers start on a 4-byte boundary of the whole datum; the padding
//! counts towards their length.
//!
//! Only the top level is decoded: nested containers and numerics are carried as opaque bytes.

const JB_FOBJECT: u32 = 0x2000_0000;
const JB_CMASK: u32 = 0x0FFF_FFFF;
const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_TYPEMASK: u32 = 0x7000_0000;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_ISSTRING: u32 = 0x0000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;
const JENTRY_ISCONTAINER: u32 = 0x5000_0000;
const JB_OFFSET_STRIDE: usize = 32;
/// The varlena header in front of the root container; the caller writes it (its encoding is the
/// server's business), this module only leaves room for it and aligns relative to it.
pub const VARLENA_HEADER: usize = 4;

/// One member's value, borrowed from wherever it lives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Str(&'a str),
    /// A numeric datum (with its own varlena header), copied as is.
    Numeric(&'a [u8]),
    /// A nested array or object container, copied as is.
    Container(&'a [u8]),
}

/// Why bytes could not be read as a jsonb object.
#[derive(Debug, PartialEq)]
pub struct Malformed(pub &'static str);

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, Malformed> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(Malformed("truncated"))
}

fn int_align(n: usize) -> usize {
    (n + 3) & !3
}

/// The members of the object in `datum` (varlena header included), in stored order.
pub fn read_object(datum: &[u8]) -> Result<Vec<(&str, Value<'_>)>, Malformed> {
    let header = read_u32(datum, VARLENA_HEADER)?;
    if header & JB_FOBJECT == 0 {
        return Err(Malformed("not an object"));
    }
    let pairs = (header & JB_CMASK) as usize;
    let entries_at = VARLENA_HEADER + 4;
    let data_at = entries_at + 8 * pairs;
    // Each item's [start, end) within the data area, from lengths and the periodic end offsets.
    let mut items = Vec::with_capacity(2 * pairs);
    let mut end = 0usize;
    for i in 0..2 * pairs {
        let entry = read_u32(datum, entries_at + 4 * i)?;
        let start = end;
        end = if entry & JENTRY_HAS_OFF != 0 {
            (entry & JENTRY_OFFLENMASK) as usize
        } else {
            start + (entry & JENTRY_OFFLENMASK) as usize
        };
        if data_at + end > datum.len() || end < start {
            return Err(Malformed("item out of bounds"));
        }
        items.push((entry & JENTRY_TYPEMASK, start, end));
    }
    let text = |start: usize, end: usize| {
        std::str::from_utf8(&datum[data_at + start..data_at + end]).map_err(|_| Malformed("utf8"))
    };
    let aligned = |start: usize, end: usize| {
        let from = int_align(start).min(end);
        &datum[data_at + from..data_at + end]
    };
    let mut members = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let (key_type, ks, ke) = items[i];
        if key_type != JENTRY_ISSTRING {
            return Err(Malformed("key is not a string"));
        }
        let (vt, vs, ve) = items[pairs + i];
        let value = match vt {
            JENTRY_ISSTRING => Value::Str(text(vs, ve)?),
            JENTRY_ISNUMERIC => Value::Numeric(aligned(vs, ve)),
            JENTRY_ISBOOL_FALSE => Value::Bool(false),
            JENTRY_ISBOOL_TRUE => Value::Bool(true),
            JENTRY_ISNULL => Value::Null,
            JENTRY_ISCONTAINER => Value::Container(aligned(vs, ve)),
            _ => return Err(Malformed("unknown entry type")),
        };
        members.push((text(ks, ke)?, value));
    }
    Ok(members)
}

/// Pads `buf` to a 4-byte boundary and returns how many bytes that took.
fn pad_to_int(buf: &mut Vec<u8>) -> u32 {
    let padding = int_align(buf.len()) - buf.len();
    buf.resize(buf.len() + padding, 0);
    padding as u32
}

/// An object datum holding `members` (keys must be distinct), with `VARLENA_HEADER` zero bytes in
/// front for the caller to fill. The same bytes jsonb_in makes for the same object.
pub fn write_object(members: &[(&str, Value<'_>)]) -> Vec<u8> {
    let mut sorted: Vec<&(&str, Value)> = members.iter().collect();
    sorted.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
    let pairs = sorted.len();
    let size_hint: usize = sorted
        .iter()
        .map(|(k, v)| {
            k.len()
                + 4
                + match v {
                    Value::Str(s) => s.len(),
                    Value::Numeric(b) | Value::Container(b) => b.len(),
                    _ => 0,
                }
        })
        .sum();
    let mut buf = Vec::with_capacity(VARLENA_HEADER + 4 + 8 * pairs + size_hint);
    buf.resize(VARLENA_HEADER, 0);
    buf.extend_from_slice(&(pairs as u32 | JB_FOBJECT).to_ne_bytes());
    let entries_at = buf.len();
    buf.resize(entries_at + 8 * pairs, 0);

    let mut entries = Vec::with_capacity(2 * pairs);
    for (key, _) in &sorted {
        buf.extend_from_slice(key.as_bytes());
        entries.push(JENTRY_ISSTRING | key.len() as u32);
    }
    for (_, value) in &sorted {
        let entry = match value {
            Value::Null => JENTRY_ISNULL,
            Value::Bool(false) => JENTRY_ISBOOL_FALSE,
            Value::Bool(true) => JENTRY_ISBOOL_TRUE,
            Value::Str(s) => {
                buf.extend_from_slice(s.as_bytes());
                JENTRY_ISSTRING | s.len() as u32
            }
            Value::Numeric(bytes) => {
                let padding = pad_to_int(&mut buf);
                buf.extend_from_slice(bytes);
                JENTRY_ISNUMERIC | (padding + bytes.len() as u32)
            }
            Value::Container(bytes) => {
                let padding = pad_to_int(&mut buf);
                buf.extend_from_slice(bytes);
                JENTRY_ISCONTAINER | (padding + bytes.len() as u32)
            }
        };
        entries.push(entry);
    }
    let mut end = 0u32;
    for (i, entry) in entries.iter().enumerate() {
        end += entry & JENTRY_OFFLENMASK;
        let stored = if i % JB_OFFSET_STRIDE == 0 {
            (entry & JENTRY_TYPEMASK) | end | JENTRY_HAS_OFF
        } else {
            *entry
        };
        buf[entries_at + 4 * i..entries_at + 4 * i + 4].copy_from_slice(&stored.to_ne_bytes());
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_shortest_first_then_bytewise() {
        let datum = write_object(&[
            ("status", Value::Str("healthy")),
            ("cache", Value::Str("shared")),
            ("cached", Value::Bool(true)),
            ("age_ms", Value::Null),
        ]);
        let keys: Vec<&str> = read_object(&datum).unwrap().iter().map(|m| m.0).collect();
        assert_eq!(keys, ["cache", "age_ms", "cached", "status"]);
    }

    #[test]
    fn written_members_read_back_unchanged() {
        let numeric = [24u8, 0, 0, 0, 0, 128, 42, 0];
        let mut nested = vec![0u8; VARLENA_HEADER];
        nested.extend_from_slice(&write_object(&[("x", Value::Str("y"))])[VARLENA_HEADER..]);
        let container = &nested[VARLENA_HEADER..];
        let datum = write_object(&[
            ("a", Value::Str("odd")),
            ("n", Value::Numeric(&numeric)),
            ("c", Value::Container(container)),
            ("f", Value::Bool(false)),
        ]);
        let members = read_object(&datum).unwrap();
        assert_eq!(
            members,
            vec![
                ("a", Value::Str("odd")),
                ("c", Value::Container(container)),
                ("f", Value::Bool(false)),
                ("n", Value::Numeric(&numeric)),
            ]
        );
    }

    #[test]
    fn numerics_and_containers_start_on_a_four_byte_boundary() {
        let numeric = [24u8, 0, 0, 0, 0, 128, 42, 0];
        // One odd-length key and string push the numeric off alignment unless padded.
        let datum = write_object(&[("k", Value::Str("abc")), ("n", Value::Numeric(&numeric))]);
        let at = datum
            .windows(numeric.len())
            .position(|w| w == numeric)
            .unwrap();
        assert_eq!(at % 4, 0);
    }

    #[test]
    fn every_thirty_second_entry_holds_an_end_offset() {
        let keys: Vec<String> = (0..20).map(|i| format!("key{i:02}")).collect();
        let members: Vec<(&str, Value)> =
            keys.iter().map(|k| (k.as_str(), Value::Str("v"))).collect();
        let datum = write_object(&members);
        let entry = |i: usize| read_u32(&datum, VARLENA_HEADER + 4 + 4 * i).unwrap();
        // Entry 0 and entry 32 (the 13th value) carry offsets; the others carry lengths.
        assert_ne!(entry(0) & JENTRY_HAS_OFF, 0);
        assert_eq!(entry(1) & JENTRY_HAS_OFF, 0);
        assert_eq!(entry(32), JENTRY_HAS_OFF | (20 * 5 + 13));
        assert_eq!(read_object(&datum).unwrap().len(), 20);
        assert_eq!(read_object(&datum).unwrap()[19], ("key19", Value::Str("v")));
    }

    #[test]
    fn a_truncated_datum_is_malformed_not_a_panic() {
        let datum = write_object(&[("status", Value::Str("healthy"))]);
        assert!(read_object(&datum[..datum.len() - 3]).is_err());
        assert!(read_object(&datum[..6]).is_err());
    }
}
