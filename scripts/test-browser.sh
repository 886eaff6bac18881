#!/usr/bin/env bash
# The browser tests, in headless Debian Chromium:
#   1. the shared wasm-layer tests (tests/wasm/mod.rs, via tests/wasm_browser.rs) through
#      chromedriver and wasm-bindgen-test-runner; Chrome's arguments come from webdriver.json;
#   2. the example page (www-example/browser/) driven by playwright-core against the
#      reference server, with its screenshots checked (tests/browser/).
#
#   scripts/test-browser.sh
#
# Installs what is missing (scripts/ensure-tools.sh --browser: Chromium, chromedriver,
# wasm-bindgen-test-runner, node_modules). Uses the built package in pkg/ and builds it only
# when it is missing; rebuild it first (scripts/build-pkg.sh) after changing the crate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# shellcheck source=ensure-tools.sh
source scripts/ensure-tools.sh --browser

step() { printf '\n== %s\n' "$*"; }

step "wasm-bindgen tests in headless Chromium (chromedriver $(/usr/bin/chromedriver --version | awk '{print $2}'))"
# The runner looks for webdriver.json in the working directory; name it so it is found
# from anywhere. It adds `headless`, `no-sandbox` and `disable-dev-shm-usage` itself;
# chromedriver gives every session a fresh temporary --user-data-dir.
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$root/webdriver.json"
# The runner stops chromedriver without ending its session, which leaves that profile
# (about 15 MB) in the temp dir: give the run a temp dir of its own and remove it.
browser_tmp="$(mktemp -d "${TMPDIR:-/tmp}/auth-session-wasm-browser.XXXXXX")"
trap 'rm -rf "$browser_tmp"' EXIT
TMPDIR="$browser_tmp" CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --target wasm32-unknown-unknown --test wasm_browser

if [ ! -f pkg/web.mjs ]; then
  step "pkg/ is missing: build the package"
  bash scripts/build-pkg.sh
fi

step "the example page in Chromium (playwright-core $(node -p 'require("playwright-core/package.json").version'))"
node --test tests/browser/*.test.mjs
