//! The shared wasm-layer tests (`tests/wasm/mod.rs`) in a headless browser, through
//! chromedriver (`CHROMEDRIVER=/usr/bin/chromedriver`; the Chrome arguments come from
//! `webdriver.json` at the crate root). `scripts/test-browser.sh` runs them:
//!
//!   CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//!     cargo test --target wasm32-unknown-unknown --test wasm_browser
#![cfg(target_arch = "wasm32")]

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod wasm;
