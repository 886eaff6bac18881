#!/usr/bin/env bash
# The package in Cloudflare's workerd: the example Worker (www-example/worker) run by
# Miniflare against the reference server (end to end, KV-backed restore, concurrent requests
# across a refresh), and `wrangler deploy --dry-run` of it; the Durable Object broker
# (auth-session/workers, www-example/worker-broker) across four isolates (broker.test.mjs).
#
#   source scripts/ensure-tools.sh && bash scripts/build-pkg.sh   # once: tools and pkg/
#   bash scripts/test-workerd.sh [node --test args…]
#
# Assumes pkg/ is built (AUTH_SESSION_PKG_DIR points elsewhere) and node_modules installed.
# wrangler 4 and Miniflare need Node >= 22: the suite runs on the `node22` devDependency
# (npm:node@22), whatever `node` is on PATH. WORKERD_TEST_VERBOSE=1 prints workerd's log.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

node22="$root/node_modules/node22/bin/node"
pkg="${AUTH_SESSION_PKG_DIR:-$root/pkg}"
[ -x "$node22" ] || { echo "test-workerd: no $node22 (run scripts/ensure-tools.sh)" >&2; exit 1; }
[ -f "$pkg/workerd.mjs" ] && [ -f "$pkg/auth_session_bg.wasm" ] ||
  { echo "test-workerd: no package in $pkg (run scripts/build-pkg.sh)" >&2; exit 1; }
echo "test-workerd: $("$node22" --version), wrangler $("$node22" node_modules/wrangler/bin/wrangler.js --version 2>/dev/null | tail -n1), package $pkg" >&2

export AUTH_SESSION_PKG_DIR="$pkg"
# Wrangler and Miniflare: no telemetry, no dev registry shared with other sessions.
export WRANGLER_SEND_METRICS=false
exec "$node22" --test --test-concurrency=1 "$@" tests/workerd/*.test.mjs
