#!/usr/bin/env bash
# Every test, in the order a failure is cheapest to find: formatting and lints, the native
# tests of the core and of the boundary, then the built package:
# Node (ESM and CJS) against the local reference server, the packed tarball in every
# runtime (Node, Deno, Bun, TypeScript, bundlers), Cloudflare's workerd, the browser
# pages, Redis fleets, and the OAuth 2.0 mode against oidc-provider. Installs what is
# missing first (scripts/ensure-tools.sh --browser --redis).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# shellcheck source=ensure-tools.sh
source scripts/ensure-tools.sh --browser --redis

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (host and wasm32), warnings are errors"
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --target wasm32-unknown-unknown -- -D warnings

step "native tests of the core (cargo test)"
cargo test

step "build the package (pkg/)"
bash scripts/build-pkg.sh

step "the packed tarball in Node ESM/CJS, Deno, Bun; TypeScript; bundlers"
bash scripts/test-runtimes.sh

step "Cloudflare workerd (Miniflare) and wrangler"
bash scripts/test-workerd.sh

step "headless Chromium: the example page"
bash scripts/test-browser.sh

step "Redis adapter and a fleet of Node processes on one Redis (redis-server, node-redis, ioredis)"
bash scripts/test-redis.sh

step "fleet chaos: kill -9, Redis restarts, stalled links, pool churn under a fixed seed (CHAOS_SEED, CHAOS_SECONDS)"
bash scripts/test-chaos.sh

step "the documentation (pkg-template/README.md, REFERENCE.md): its examples run, it covers every option, method, event, error code and export"
node --test tests/docs/*.test.mjs

# ky 2 declares Node >= 22 (it runs on Node 20 too, where the last step tests it): the
# helpers' tests on the `node22` devDependency, the Node that npm gives ky 2 on.
step "the ky and axios helpers (tests/js/clients.test.mjs) on Node 22, ky 2's floor"
node_modules/node22/bin/node --test tests/js/clients.test.mjs

step "OAuth 2.0 mode: the package against a real authorization server (oidc-provider) and the reference server's OAuth faults, a fleet of Node processes on Redis"
node --test tests/oauth/*.test.mjs

# Last, so the closing lines are the test runner's own summary.
step "JavaScript tests: the reference server, then the package in Node (ESM and CJS)"
node --test tests/server/*.test.mjs tests/js/*.test.mjs tests/js/*.test.cjs
