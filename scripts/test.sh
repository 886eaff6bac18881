#!/usr/bin/env bash
# Every test, in the order a failure is cheapest to find: formatting and lints, the native
# core tests, the wasm layer in Node, then the built package against the local reference
# server. Installs what is missing first (scripts/ensure-tools.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# shellcheck source=ensure-tools.sh
source scripts/ensure-tools.sh --

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (host and wasm32), warnings are errors"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --target wasm32-unknown-unknown -- -D warnings

step "native tests of the core (cargo test)"
cargo test

step "wasm-bindgen tests in Node"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --target wasm32-unknown-unknown --test wasm_node

step "build the package (pkg/)"
bash scripts/build-pkg.sh

step "JavaScript tests: the reference server, then the package in Node (ESM and CJS)"
node --test tests/server/*.test.mjs tests/js/*.test.mjs tests/js/*.test.cjs
