#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod wasm;
