//! The pure-Rust core: protocol, session state machine, refresh timing, single-flight,
//! retries and the error model. It knows nothing of wasm-bindgen or JavaScript; the world
//! reaches it through the traits in [`platform`], so every behaviour is tested natively with
//! a fake clock and a scripted server.
#![forbid(unsafe_code)]

pub mod config;
pub mod envelope;
pub mod error;
pub mod flight;
pub mod http_date;
pub mod json;
pub mod platform;
pub mod race;
pub mod retry;
pub mod rfc3339;
pub mod secret;
pub mod session;
pub mod timing;
pub mod url;

pub use config::{Config, Credentials, Options};
pub use error::{AuthError, ErrorCode};
pub use platform::{Event, Incoming, LocalFuture, Outgoing, OutgoingBody, Platform, Storage};
pub use session::{Abort, Phase, Session, SessionInfo};
