#![doc = include_str!("../README.md")]

pub mod core;

#[cfg(target_arch = "wasm32")]
pub mod wasm;
