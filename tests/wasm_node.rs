//! The shared wasm-layer tests (`tests/wasm/mod.rs`) in Node:
//!
//!   CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!     cargo test --target wasm32-unknown-unknown --test wasm_node
#![cfg(target_arch = "wasm32")]

mod wasm;
