#!/usr/bin/env bash
# The browser tests, in headless Debian Chromium: the example page (www-example/browser/),
# which loads the package's web entry (its glue fetches and instantiates the wasm), driven by
# playwright-core against the reference server, with its screenshots checked
# (tests/browser/).
#
#   scripts/test-browser.sh
#
# Installs what is missing (scripts/ensure-tools.sh --browser: Chromium, node_modules). Uses the built package in pkg/ and builds it only
# when it is missing; rebuild it first (scripts/build-pkg.sh) after changing the crate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# shellcheck source=ensure-tools.sh
source scripts/ensure-tools.sh --browser

step() { printf '\n== %s\n' "$*"; }

if [ ! -f pkg/web.mjs ]; then
  step "pkg/ is missing: build the package"
  bash scripts/build-pkg.sh
fi

step "the example page in Chromium (playwright-core $(node -p 'require("playwright-core/package.json").version'))"
node --test tests/browser/*.test.mjs
