//! The WebAssembly layer: glue only. It exports [`Core`], the core's [`Machine`] as a
//! JavaScript class, converts what JavaScript hands in (numbers, strings, `JSON.parse`d
//! values) into the core's inputs, and hands the core's outputs to the JavaScript driver
//! (`pkg-template/session.js`), which performs them. No decision is made here, and nothing
//! here awaits: there are no futures, no executor and no timers in the wasm.
//!
//! [`Machine`]: crate::core::Machine

mod core;
mod json;

pub use self::core::Core;
