#!/usr/bin/env bash
# The benchmark, in one command: installs what it needs, builds the release package, runs
# every figure and prints a table per figure.
#
#   bash bench/run.sh            # full run (≤ 10 minutes on a quiet 2-core machine)
#   bash bench/run.sh --quick    # ~1 minute smoke run
#   bash bench/run.sh --only size,startup      # a subset: size,startup,throughput,storm,memory
#
# Writes bench/results.json (git-ignored) and bench/chart.svg.
#
# Environment:
#   BENCH_SKIP_BUILD=1       use the package already in pkg/ (skip scripts/build-pkg.sh)
#   AUTH_SESSION_PKG_DIR     the package to benchmark (default: pkg/), passed to build-pkg.sh too
set -euo pipefail

bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$bench")"
say() { echo "bench: $*" >&2; }

# Root tools (binaryen, esbuild in the root node_modules), on PATH.
# shellcheck source=../scripts/ensure-tools.sh
source "$root/scripts/ensure-tools.sh" --

pkg="$(realpath -m "${AUTH_SESSION_PKG_DIR:-$root/pkg}")"
if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
  say "BENCH_SKIP_BUILD=1: using the package in $pkg"
else
  say "building the release package (scripts/build-pkg.sh)"
  AUTH_SESSION_PKG_DIR="$pkg" bash "$root/scripts/build-pkg.sh" >&2
fi
[ -f "$pkg/package.json" ] && [ -f "$pkg/auth_session_bg.wasm" ] ||
  { say "no built package in $pkg (run without BENCH_SKIP_BUILD=1)"; exit 1; }

# The contenders, pinned by bench/package-lock.json, in bench/node_modules; reinstalled only
# when the lock changed (or the install is incomplete).
stamp="$bench/node_modules/.bench-npm-ci.stamp"
if [ -f "$stamp" ] && [ ! "$bench/package-lock.json" -nt "$stamp" ] && [ ! "$bench/package.json" -nt "$stamp" ]; then
  say "bench/node_modules: up to date with bench/package-lock.json"
else
  say "bench/node_modules: npm ci"
  (cd "$bench" && npm ci --no-audit --no-fund >&2)
  touch "$stamp"
fi
# Ours is imported by name, resolved through the package's own exports map, like a user's.
ln -sfn "$pkg" "$bench/node_modules/auth-session"

# exec: Ctrl-C reaches run.mjs directly, which stops the server and the running job.
cd "$root"
exec node "$bench/run.mjs" "$@"
