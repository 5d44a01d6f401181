//! jsonb values passed through as PostgreSQL's own datums.
//!
//! `pgrx::JsonB` converts through `serde_json::Value`: numbers become f64
//! (`123456789012345678901234567890` comes back as `1.2345678901234568e29`, `1e400` is an error)
//! and nesting deeper than serde's recursion limit panics. The cache stores and returns results
//! exactly as PostgreSQL made them, so it keeps them as datums (or their bytes) end to end.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::prelude::*;

/// A jsonb datum: an argument as PostgreSQL passed it, or a result built in this call.
pub struct RawJsonb(pg_sys::Datum);

impl RawJsonb {
    /// A jsonb datum in the current memory context holding `bytes`, the whole varlena (4-byte
    /// header included, which is set here).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        // SAFETY: palloc returns a writable block of the requested size in the current memory
        // context; the varlena header written over the first 4 bytes makes it a valid datum.
        unsafe {
            let ptr = pg_sys::palloc(bytes.len()) as *mut u8;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len());
            pgrx::set_varsize_4b(ptr as *mut pg_sys::varlena, bytes.len() as i32);
            RawJsonb(pg_sys::Datum::from(ptr))
        }
    }

    /// The datum, for an SPI argument of type jsonb.
    pub fn datum(&self) -> pg_sys::Datum {
        self.0
    }

    /// The value as serde_json reads its text, for code that inspects it. A document nested
    /// deeper than serde's limit is refused with 54001 and one whose numbers serde cannot hold
    /// (beyond f64, such as 1e400) with 22023, both naming `arg`, instead of a panic.
    pub fn to_value(&self, arg: &str) -> serde_json::Value {
        // SAFETY: jsonb_out takes a jsonb datum and returns a palloc'd NUL-terminated string.
        let text = unsafe {
            let out = pgrx::direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(self.0)])
                .unwrap_or_else(|| crate::error::spi_failure(arg, "jsonb_out returned NULL"));
            std::ffi::CStr::from_ptr(out.cast_mut_ptr::<std::ffi::c_char>())
                .to_string_lossy()
                .into_owned()
        };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            if e.to_string().contains("recursion limit") {
                crate::error::too_complex(arg, "nested too deeply")
            } else {
                crate::error::invalid_argument(arg, e)
            }
        })
    }

    /// The value's bytes, detoasted: an owned copy that outlives the memory it was read from.
    pub fn to_bytes(&self) -> Vec<u8> {
        bytes_of(self.0)
    }
}

/// The bytes of a jsonb datum (detoasted, with a 4-byte header), copied out of its memory.
pub fn bytes_of(datum: pg_sys::Datum) -> Vec<u8> {
    // SAFETY: the datum is a non-NULL jsonb (a varlena); pg_detoast_datum returns a plain
    // 4-byte-header copy or the datum itself, whose whole length varsize_any reads.
    unsafe {
        let plain = pg_sys::pg_detoast_datum(datum.cast_mut_ptr::<pg_sys::varlena>());
        let len = pgrx::varsize_any(plain);
        std::slice::from_raw_parts(plain as *const u8, len).to_vec()
    }
}

impl FromDatum for RawJsonb {
    // SAFETY: FromDatum's contract (the datum is a jsonb of the current call); it is kept as it
    // is, not dereferenced here.
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null { None } else { Some(RawJsonb(datum)) }
    }
}

impl IntoDatum for RawJsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// SAFETY: the argument is declared jsonb in SQL, so its datum is a jsonb varlena; NULL is
// handled by `unbox_nullable_arg`'s default (the arg's isnull flag).
unsafe impl<'fcx> ArgAbi<'fcx> for RawJsonb {
    // SAFETY: ArgAbi's contract: pgrx calls this only for an argument of this function, which
    // is declared jsonb.
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: as above; a NULL reaching here is refused rather than read.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| {
            crate::error::spi_failure("a jsonb argument", format!("argument {index} is NULL"))
        })
    }
}

// SAFETY: the datum is a valid jsonb allocated in the function's memory context.
unsafe impl BoxRet for RawJsonb {
    // SAFETY: BoxRet's contract: called once, with the fcinfo of the function returning jsonb.
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: a non-NULL jsonb datum (an argument passed on, or built by `from_bytes` in
        // this call's memory context) returned as the function's result.
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

pgrx::impl_sql_translatable!(RawJsonb, "jsonb");
