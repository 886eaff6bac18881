//! The boundary's encoding: little-endian integers and floats, strings as a `u32` byte
//! length and UTF-8, an absent string as the length `u32::MAX`. The JavaScript side
//! (`pkg-template/auth_session.js`) writes and reads the same layout with one `DataView`.
//!
//! Nothing read here can panic: a short or malformed input makes every later read `None`,
//! and the step that read it answers "malformed" instead of trapping. (A trap would take the
//! whole wasm instance down with it, every session of the isolate included.)

#[allow(unused_imports)]
use crate::prelude::*;

/// `u32::MAX` as a string's length: no string.
pub const NONE: u32 = u32::MAX;

pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Some(a)
    }

    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Option<bool> {
        Some(self.u8()? != 0)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub fn f64(&mut self) -> Option<f64> {
        self.array().map(f64::from_le_bytes)
    }

    /// Time in local epoch milliseconds, as the core counts it: held to what a JavaScript
    /// `Date` can hold (±8.64e15), so the machine's deadline arithmetic cannot overflow
    /// whatever clock the driver reads (NaN reads as 0).
    pub fn now(&mut self) -> Option<i64> {
        self.f64().map(|t| t.clamp(-8.64e15, 8.64e15) as i64)
    }

    /// A flag byte then, if it is set, a float: an option the user may have left out.
    pub fn opt_f64(&mut self) -> Option<Option<f64>> {
        Some(if self.bool()? { Some(self.f64()?) } else { None })
    }

    /// 0 absent, 1 false, 2 true.
    pub fn opt_bool(&mut self) -> Option<Option<bool>> {
        Some(match self.u8()? {
            0 => None,
            v => Some(v == 2),
        })
    }

    pub fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()?;
        if n == NONE {
            return None;
        }
        core::str::from_utf8(self.take(n as usize)?).ok()
    }

    /// `Some(None)`: no string; `None`: malformed.
    pub fn opt_str(&mut self) -> Option<Option<String>> {
        let save = self.at;
        if self.u32()? == NONE {
            return Some(None);
        }
        self.at = save;
        Some(Some(self.str()?.to_owned()))
    }

    pub fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }
}

/// The output of a step. Kept between steps, so steady traffic allocates nothing here.
#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.bytes.push(v as u8);
    }

    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.bytes.extend_from_slice(s.as_bytes());
    }

    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.u32(NONE),
        }
    }

    /// A flag byte then, if set, the float (JavaScript reads `undefined` for an unset one).
    pub fn opt_f64(&mut self, v: Option<f64>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.f64(v);
        }
    }
}
