//! The pure-Rust core: protocol, session state machine, refresh timing, single-flight,
//! retries and the error model. It knows nothing of wasm, JavaScript, futures or
//! clocks: [`machine::Machine`] takes inputs with `now` and hands out what to do next, so
//! every behaviour is tested natively with straight-line tests.
#![forbid(unsafe_code)]

pub mod config;
pub mod envelope;
pub mod error;
pub mod fingerprint;
pub mod http_date;
pub mod json;
pub mod machine;
pub mod oauth;
pub mod retry;
pub mod rfc3339;
pub mod secret;
pub mod text;
pub mod timing;
pub mod url;

pub use config::{Config, Credentials, Options};
pub use error::{AuthError, Cause, ErrorCode};
pub use machine::{Machine, Phase, SessionInfo};
