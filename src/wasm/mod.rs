//! The WebAssembly layer: glue only. It implements the core's [`Platform`] over the
//! runtime's own `fetch`, `setTimeout` and `Date.now()`, reads options and storage from
//! JavaScript, and exports the `AuthSession` class. No protocol decision is made here.
//!
//! [`Platform`]: crate::core::Platform

mod bindings;
mod error;
mod executor;
mod options;
mod platform;
mod session;

pub use session::AuthSession;
mod storage;
mod timers;
mod wake;
