#!/usr/bin/env bash
# Fleet chaos (tests/chaos/): Node processes with SessionPools on one real redis-server,
# random calls with 3-second access tokens, and a seeded schedule of kill -9 (any process,
# the lease holder mid-refresh, the holder between the server's rotation and its record
# write), Redis restarts on the same port, stalled Redis links; then the invariants (spent-
# token reuses, logins, failed calls, call durations) are checked and the figures printed.
#
#   bash scripts/test-chaos.sh                          # the fixed seed, ~35 s (the test command)
#   CHAOS_SECONDS=600 bash scripts/test-chaos.sh        # a soak
#   CHAOS_SEED=42 CHAOS_SECONDS=180 bash scripts/test-chaos.sh
#
# Assumes redis-server on PATH, node_modules installed (redis, ioredis) and pkg/ built
# (or AUTH_SESSION_PKG_DIR). CHAOS_FIGURES=1 prints the figures as indented JSON too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
echo "test-chaos: seed ${CHAOS_SEED:-1307 (fixed)}, ${CHAOS_SECONDS:-35} s" >&2
# The same checks and environment as the Redis suite, with the chaos suite's files.
REDIS_TESTS="tests/chaos/*.test.mjs" exec bash "$root/scripts/test-redis.sh" "$@"
