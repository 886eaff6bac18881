#!/usr/bin/env bash
# The Redis adapter (auth-session/redis) against a real redis-server, through node-redis and
# ioredis, and a fleet of Node processes sharing one Redis record (tests/redis/). Each test
# file starts and stops its own redis-server on a free loopback port, and the fleet test its
# reference server and child processes; this script starts nothing itself.
#
#   source scripts/ensure-tools.sh --redis && bash scripts/build-pkg.sh   # once: tools and pkg/
#   bash scripts/test-redis.sh [node --test args…]
#
# Assumes redis-server on PATH, node_modules installed (redis, ioredis) and pkg/ built
# (or AUTH_SESSION_PKG_DIR pointing at a built package). One file at a time: the fleet's
# timings should not compete with another suite for the two cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pkg="${AUTH_SESSION_PKG_DIR:-$root/pkg}"
command -v redis-server >/dev/null 2>&1 ||
  { echo "test-redis: no redis-server (run scripts/ensure-tools.sh --redis)" >&2; exit 1; }
[ -f "$pkg/node.mjs" ] && [ -f "$pkg/redis.js" ] ||
  { echo "test-redis: no package with redis.js in $pkg (run scripts/build-pkg.sh)" >&2; exit 1; }
echo "test-redis: $(redis-server --version | cut -d' ' -f1-3), node $(node --version), package $pkg" >&2

export AUTH_SESSION_PKG_DIR="$pkg"
# REDIS_TESTS: another suite on Redis (scripts/test-chaos.sh), unquoted: a glob.
# shellcheck disable=SC2086
exec node --test --test-concurrency=1 "$@" ${REDIS_TESTS:-tests/redis/*.test.mjs}
