//! A `JSON.parse`d value, as the JavaScript side encodes it (`pkg-template/auth_session.js`,
//! `tree`), read back into the core's [`Json`]. Only auth responses (capped at 64 KiB) and
//! storage records come through here; an API body's data never does.
//!
//! Tags: 0 null, 1 false, 2 true, 3 number (f64), 4 string, 5 array (u32 count, items),
//! 6 object (u32 count, then key string and value per member). The writer cuts what is
//! deeper than [`MAX_DEPTH`] to null and gives up (null as a whole) past [`MAX_VALUES`]
//! values; the reader holds the input to the same bounds, so an input no writer makes
//! (counts larger than the bytes, endless nesting) is refused, not allocated or recursed.

#[allow(unused_imports)]
use crate::prelude::*;

use super::wire::Reader;
use crate::core::json::Json;

/// Deeper than any document of the protocol.
pub const MAX_DEPTH: u32 = 16;
/// More values than a 64 KiB auth response can hold (each takes two bytes or more).
pub const MAX_VALUES: u32 = 65_536;

/// `None`: not a tree this encoding makes.
pub fn read(r: &mut Reader) -> Option<Json> {
    let mut budget = MAX_VALUES;
    value(r, 0, &mut budget)
}

fn value(r: &mut Reader, depth: u32, budget: &mut u32) -> Option<Json> {
    *budget = budget.checked_sub(1)?;
    Some(match r.u8()? {
        0 => Json::Null,
        1 => Json::Bool(false),
        2 => Json::Bool(true),
        3 => Json::Number(r.f64().filter(|n| n.is_finite())?),
        4 => Json::String(r.string()?),
        5 | 6 if depth >= MAX_DEPTH => return None,
        5 => {
            let n = r.u32()?;
            if n > *budget {
                return None;
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(value(r, depth + 1, budget)?);
            }
            Json::Array(items)
        }
        6 => {
            let n = r.u32()?;
            if n > *budget {
                return None;
            }
            let mut members = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let key = r.string()?;
                members.push((key, value(r, depth + 1, budget)?));
            }
            Json::Object(members)
        }
        _ => return None,
    })
}
