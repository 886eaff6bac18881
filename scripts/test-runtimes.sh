#!/usr/bin/env bash
# The built package as users get it, in every non-browser, non-workerd runtime: packs pkg/
# into a tarball, checks what it ships, installs it into a throwaway consumer project, and
# there runs the one contract smoke test (tests/runtimes/smoke.mjs) with Node 20 (ESM), Deno
# and Bun, the CommonJS twin (smoke.cjs) with Node and Bun, a strict TypeScript consumer
# (tsc, and `deno check`), and esbuild bundles for the browser and for Node. Ends with a
# table of import + instantiate times and download sizes per runtime.
#
#   bash scripts/build-pkg.sh        # first: this script builds nothing
#   bash scripts/test-runtimes.sh
#
# Tools: node 20 and npm; deno, bun, typescript and esbuild come from the root
# devDependencies (scripts/ensure-tools.sh runs `npm ci` when they are missing or stale).
# Everything it makes lives in a temporary directory that is removed at exit; nothing is
# written to the repository. Takes well under a minute once the tools are installed.
#
# Environment:
#   AUTH_SESSION_PKG_DIR   the package to test (default pkg/)
#   KEEP_WORK=1            keep the temporary directory and print where it is
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg_dir="$(realpath -m "${AUTH_SESSION_PKG_DIR:-$root/pkg}")"
here="$root/tests/runtimes"

# shellcheck source=ensure-tools.sh
source "$root/scripts/ensure-tools.sh" --

step() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }

[ -f "$pkg_dir/package.json" ] || { echo "test-runtimes: no $pkg_dir/package.json: run scripts/build-pkg.sh first" >&2; exit 1; }
for tool in node npm deno bun tsc esbuild gzip tar timeout; do
  command -v "$tool" >/dev/null || { echo "test-runtimes: $tool is not on PATH (source scripts/ensure-tools.sh)" >&2; exit 1; }
done

# Node: the machine's own (the package's floor is Node 20), found on PATH past the root
# node_modules/.bin, where a devDependency may put another Node first (node@22 for wrangler).
# When the first `node` on PATH is another version, the smoke tests run with it too.
node_main=""
IFS=: read -ra path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  [ -n "$dir" ] && [ -x "$dir/node" ] || continue
  case "$(realpath -m "$dir")" in "$root"/node_modules/*) continue ;; esac
  node_main="$dir/node"
  break
done
[ -n "$node_main" ] || { echo "test-runtimes: no Node outside node_modules on PATH" >&2; exit 1; }
node_main_version="$("$node_main" --version)"
node_alt="$(command -v node)"
node_alt_version="$("$node_alt" --version)"
[ "$node_alt_version" != "$node_main_version" ] || node_alt=""
case "$node_main_version" in
  v20.*) ;;
  *) echo "test-runtimes: note: the machine's Node is $node_main_version, not Node 20 (the package's floor)" >&2 ;;
esac

work="$(mktemp -d "${TMPDIR:-/tmp}/auth-session-runtimes.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "test-runtimes: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# No colour codes in captured output; a cache of Deno's own under the work dir, so a run
# neither depends on nor leaves anything in ~/.cache/deno.
export NO_COLOR=1 DENO_NO_UPDATE_CHECK=1 DENO_DIR="$work/deno-dir"

passed=0
failed=0
failures=()
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "FAIL $*"; }

# --- The root lock: packages from the default registry only -----------------------------------
# The lock records no "resolved" URLs (omit-lockfile-registry-resolved); one that points at
# another host would make `npm ci` fetch from there.
step "package-lock.json: registry hosts"
other_hosts="$(grep -o '"resolved": *"[a-z+]*://[^/"]*' "$root/package-lock.json" | sed 's/.*:\/\///' | grep -vx 'registry.npmjs.org' | sort -u || true)"
if [ -z "$other_hosts" ]; then
  pass "package-lock.json resolves from the default registry only"
else
  fail "package-lock.json names other registry hosts: $(echo $other_hosts)"
fi

# --- The tarball -----------------------------------------------------------------------------
step "npm pack $(realpath --relative-to="$root" "$pkg_dir")"
pack_json="$(cd "$work" && npm pack "$pkg_dir" --pack-destination "$work" --json --loglevel=error)"
tgz="$work/$(node -e 'console.log(JSON.parse(process.argv[1])[0].filename)' "$pack_json")"
[ -f "$tgz" ] || { echo "test-runtimes: npm pack made no tarball" >&2; exit 1; }
tgz_bytes="$(stat -c %s "$tgz")"
unpacked_bytes="$(node -e 'console.log(JSON.parse(process.argv[1])[0].unpackedSize)' "$pack_json")"
note "$(basename "$tgz"): $tgz_bytes bytes (unpacked $unpacked_bytes bytes)"

# Exactly what a user needs: the entries, the glue, the wasm, the driver (session.js) and
# AuthError (auth-error.js), the hand-written types, the manifest, README, REFERENCE and CHANGELOG, and LICENSE. Nothing of the build (target/,
# Rust sources, node-cjs.source.mjs), no tarballs, no node_modules.
expected_files=(
  LICENSE README.md REFERENCE.md CHANGELOG.md package.json
  auth_session.js auth_session_bg.wasm session.js auth-error.js pool.js clients.js clients.d.ts
  node.mjs node.cjs web.mjs deno.mjs workerd.mjs
  index.d.ts index.d.cts
  workers.js workers.d.ts
  redis.js redis.d.ts
  encryption.js signer.js
)
listing="$(tar tzf "$tgz")"
problems=()
while IFS= read -r entry; do
  [ -n "$entry" ] || continue
  case "$entry" in package/*) ;; *) problems+=("outside package/: $entry"); continue ;; esac
  file="${entry#package/}"
  case "$file" in
    target/* | */target/* | *.rs | *.tgz | node_modules/* | node-cjs.source.mjs | auth_session.d.ts | auth_session_bg.wasm.d.ts | *.opt.wasm)
      problems+=("must not ship: $file"); continue ;;
  esac
  found=0
  for want in "${expected_files[@]}"; do [ "$file" = "$want" ] && found=1; done
  [ "$found" = 1 ] || problems+=("unexpected file: $file")
done <<<"$listing"
for want in "${expected_files[@]}"; do
  grep -qx "package/$want" <<<"$listing" || problems+=("missing: $want")
done
file_count="$(grep -c . <<<"$listing")"
if [ "${#problems[@]}" = 0 ]; then
  pass "tarball holds exactly the $file_count files a user needs"
else
  printf '     %s\n' "${problems[@]}"
  fail "tarball file list"
fi

# --- A consumer project with the tarball installed ------------------------------------------
step "install the tarball into a consumer project"
consumer="$work/consumer"
mkdir -p "$consumer"
cat >"$consumer/package.json" <<'JSON'
{ "name": "auth-session-consumer", "private": true, "type": "module" }
JSON
# The package has no dependencies: nothing but the tarball is installed, offline is enough.
if (cd "$consumer" && npm install "$tgz" --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null); then
  installed="$(node -p 'require(process.argv[1]).version' "$consumer/node_modules/auth-session/package.json")"
  pass "npm install $(basename "$tgz") (auth-session@$installed)"
else
  fail "npm install $(basename "$tgz")"
  echo "test-runtimes: cannot go on without the installed package" >&2
  exit 1
fi
cp "$here/smoke.mjs" "$here/smoke.cjs" "$here/startup.mjs" "$here/startup.cjs" "$consumer/"
cp -r "$here/ts-consumer" "$consumer/ts-consumer"
cp -r "$here/ts-workers" "$consumer/ts-workers"
# Cloudflare's types from the repository's devDependencies, for the Worker consumer.
mkdir -p "$consumer/node_modules/@cloudflare"
ln -sfn "$root/node_modules/@cloudflare/workers-types" "$consumer/node_modules/@cloudflare/workers-types"
: >"$consumer/empty.mjs"
: >"$consumer/empty.cjs"

# --- The reference server ---------------------------------------------------------------------
"$node_main" "$root/tests/server/reference-server.mjs" --port 0 --user demo:demo-password \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
server_url=""
for _ in $(seq 1 100); do
  server_url="$(sed -n 's/^REFERENCE_SERVER_URL=//p' "$work/server.out")"
  [ -n "$server_url" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$server_url" ] || { cat "$work/server.err" >&2; echo "test-runtimes: the reference server did not start" >&2; exit 1; }
note "reference server: $server_url"

# --- Runtimes -------------------------------------------------------------------------------
# Commands per runtime, run in the consumer project (so "auth-session" is the installed copy).
# Deno: the consumer's package.json makes Deno use its node_modules as is (the "manual" mode,
# stated explicitly), and the exports map's "deno" condition picks deno.mjs, which reads the
# .wasm next to it: reading the package is the only file access it is granted.
# --cached-only: Deno must never reach for a registry here. Bun: the Node entries ("node"
# condition); --no-install keeps it from ever auto-installing a package it cannot find.
deno_run=(deno run --node-modules-dir=manual --cached-only --no-prompt
  --allow-net=127.0.0.1 --allow-env=REFERENCE_SERVER_URL,SMOKE_EXPECT_ENTRY
  --allow-read=node_modules/auth-session)
bun_run=(bun --no-install)

# label, entry the runtime must resolve, command... ; the smoke file is the last argument.
run_smoke() {
  local label="$1" entry="$2"; shift 2
  step "smoke: $label ($*)"
  local out="$work/smoke.out" err="$work/smoke.err" rc=0
  (cd "$consumer" && REFERENCE_SERVER_URL="$server_url" SMOKE_EXPECT_ENTRY="$entry" \
    timeout 60 "$@" >"$out" 2>"$err") || rc=$?
  sed 's/^/   /' "$out"
  local summary
  summary="$(tail -n 1 "$out")"
  if [ "$rc" = 0 ] && [[ "$summary" =~ ^smoke:\ [0-9]+\ passed,\ 0\ failed$ ]] && [ ! -s "$err" ]; then
    pass "$label: ${summary#smoke: }"
  else
    if [ -s "$err" ]; then echo "   stderr (must be empty):"; sed 's/^/   | /' "$err" | head -n 40; fi
    fail "$label: exit $rc, ${summary:-no summary}"
  fi
}

run_smoke "Node $node_main_version ESM" node.mjs "$node_main" smoke.mjs
run_smoke "Node $node_main_version CJS" node.cjs "$node_main" smoke.cjs
if [ -n "$node_alt" ]; then
  run_smoke "Node $node_alt_version ESM" node.mjs "$node_alt" smoke.mjs
  run_smoke "Node $node_alt_version CJS" node.cjs "$node_alt" smoke.cjs
fi
run_smoke "Deno $(deno --version | sed -n 's/^deno \([^ ]*\).*/\1/p')" deno.mjs "${deno_run[@]}" smoke.mjs
run_smoke "Bun $(bun --version) ESM" node.mjs "${bun_run[@]}" smoke.mjs
run_smoke "Bun $(bun --version) CJS" node.cjs "${bun_run[@]}" smoke.cjs

# --- TypeScript -----------------------------------------------------------------------------
step "TypeScript consumer: tsc $(tsc --version | sed 's/^Version //') --noEmit (strict, module nodenext; ESM + CJS)"
if (cd "$consumer/ts-consumer" && tsc --noEmit -p . >"$work/tsc.out" 2>&1); then
  pass "tsc --noEmit: index.ts (import) and cjs.cts (require) type-check against the installed package"
else
  sed 's/^/   /' "$work/tsc.out"
  fail "tsc --noEmit"
fi
if (cd "$consumer/ts-workers" && tsc --noEmit -p . >"$work/tsc-workers.out" 2>&1); then
  pass "tsc --noEmit with @cloudflare/workers-types: a service binding as fetch, KV and DO storage, ctx as waitUntil"
else
  sed 's/^/   /' "$work/tsc-workers.out"
  fail "tsc --noEmit (Workers types)"
fi
# Deno reads the same declarations through the exports map's "types" condition.
cp "$consumer/ts-consumer/index.ts" "$consumer/deno-check.ts"
if (cd "$consumer" && deno check --node-modules-dir=manual --cached-only deno-check.ts >"$work/deno-check.out" 2>&1); then
  pass "deno check: index.ts type-checks in Deno too"
else
  sed 's/^/   /' "$work/deno-check.out"
  fail "deno check"
fi

# --- Bundlers -------------------------------------------------------------------------------
# One line that imports the package, bundled by esbuild for each platform: any warning fails.
# esbuild does not follow `new URL("auth_session_bg.wasm", import.meta.url)` (the web and Node
# entries' way to find the wasm), so it emits the bundle without the .wasm; a user copies
# auth-session/auth_session_bg.wasm (exported as such) next to the bundle. The `file` loader
# covers a .wasm that is imported (the workerd entry's way). The bundles are then run: the
# Node one by Node, the browser one by Deno (web APIs, the same fetch-based loader).
cat >"$consumer/bundle-entry.mjs" <<'JS'
import { AuthSession, AuthError } from "auth-session"; console.log(`bundle ${new AuthSession({ host: "http://127.0.0.1:9" }).info.state} ${new AuthError("m", "N", "C", 0, false) instanceof Error}`);
JS
esbuild_version="$(esbuild --version)"
bundle() { # platform, runner...
  local platform="$1"; shift
  local out="$consumer/bundle-$platform"
  step "esbuild $esbuild_version --bundle --platform=$platform --format=esm"
  if ! (cd "$consumer" && esbuild bundle-entry.mjs --bundle --format=esm --platform="$platform" \
    --loader:.wasm=file --outdir="$out" --log-level=warning >"$work/esbuild.out" 2>&1); then
    sed 's/^/   /' "$work/esbuild.out"
    fail "esbuild --platform=$platform: build failed"
    return
  fi
  if [ -s "$work/esbuild.out" ]; then
    sed 's/^/   /' "$work/esbuild.out"
    fail "esbuild --platform=$platform: printed warnings"
    return
  fi
  note "bundle: $(stat -c %s "$out/bundle-entry.js") bytes; emitted: $(cd "$out" && ls | tr '\n' ' ')"
  [ -f "$out/auth_session_bg.wasm" ] || cp "$consumer/node_modules/auth-session/auth_session_bg.wasm" "$out/"
  local result rc=0
  result="$(cd "$out" && timeout 30 "$@" bundle-entry.js 2>"$work/bundle.err")" || rc=$?
  if [ "$rc" = 0 ] && [ "$result" = "bundle anonymous true" ] && [ ! -s "$work/bundle.err" ]; then
    pass "esbuild --platform=$platform: no warnings; the bundle runs ($*)"
  else
    sed 's/^/   | /' "$work/bundle.err" | head -n 20
    fail "esbuild --platform=$platform: the bundle did not run (exit $rc, '$result')"
  fi
}
bundle browser deno run --no-prompt --allow-read=.
bundle node "$node_main"

# --- Startup time and size ------------------------------------------------------------------
# Import + instantiate, median of 7 fresh processes per runtime (after one unmeasured warm-up
# run, so every measured run finds the files in the page cache and Deno its code cache):
#   - "import+new": measured inside the process by startup.mjs/.cjs with performance.now(),
#     from just before the package's import to the end of the first `new AuthSession()`: the
#     package's own cost (read + compile + instantiate the wasm, evaluate the JS), comparable
#     across runtimes because the runtimes' differing time origins cancel out;
#   - "process": the wall time of the whole process (spawn to exit) running startup.*, and
#     "empty": the same runtime running an empty script, so process - empty is the cost a
#     user's cold start pays for the package as seen from outside.
# NODE_EXTRA_CA_CERTS is unset for these runs: Node 20 parses that bundle at startup (about
# 300 ms on this machine kind), which would swamp the package's cost; nothing here uses TLS.
step "startup (median of 7 fresh processes) and size (gzip -9)"
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'; }
now_ns() { date +%s%N; }
# label, script, runner... -> sets m_import m_process m_empty (milliseconds)
measure() {
  local script="$1"; shift
  local empty="empty.${script##*.}" i t0 t1 out
  local imports=() processes=() empties=()
  # The unmeasured warm-up run.
  (cd "$consumer" && env -u NODE_EXTRA_CA_CERTS "$@" "$script" >/dev/null 2>&1 &&
    env -u NODE_EXTRA_CA_CERTS "$@" "$empty" >/dev/null 2>&1) || { m_import="error"; return 1; }
  for i in 1 2 3 4 5 6 7; do
    t0="$(now_ns)"; out="$(cd "$consumer" && env -u NODE_EXTRA_CA_CERTS "$@" "$script")" || return 1; t1="$(now_ns)"
    [[ "$out" =~ ^startup\ [0-9.]+$ ]] || { m_import="error"; return 1; }
    imports+=("${out#startup }")
    processes+=("$(( (t1 - t0) / 1000 ))")
    t0="$(now_ns)"; (cd "$consumer" && env -u NODE_EXTRA_CA_CERTS "$@" "$empty" >/dev/null) || return 1; t1="$(now_ns)"
    empties+=("$(( (t1 - t0) / 1000 ))")
  done
  m_import="$(printf '%s\n' "${imports[@]}" | median | awk '{ printf "%.1f", $1 }')"
  m_process="$(printf '%s\n' "${processes[@]}" | median | awk '{ printf "%.1f", $1 / 1000 }')"
  m_empty="$(printf '%s\n' "${empties[@]}" | median | awk '{ printf "%.1f", $1 / 1000 }')"
}
# Bytes a runtime loads for one entry: the entry, what it imports, and the wasm. gzip -9 is
# summed per file (each file is fetched or read on its own).
installed="$consumer/node_modules/auth-session"
entry_files() { # entry -> files
  case "$1" in
    node.cjs) echo "node.cjs auth_session_bg.wasm" ;; # node.cjs bundles the glue, driver and AuthError
    *) echo "$1 auth_session.js session.js auth-error.js encryption.js signer.js pool.js auth_session_bg.wasm" ;;
  esac
}
size_of() { # entry -> "raw gzip"
  local raw=0 gz=0 f
  for f in $(entry_files "$1"); do
    raw=$((raw + $(stat -c %s "$installed/$f")))
    gz=$((gz + $(gzip -9 -c "$installed/$f" | wc -c)))
  done
  echo "$raw $gz"
}

rows=()
row() { # label, entry, script, runner...
  local label="$1" entry="$2" script="$3"; shift 3
  m_import="-"; m_process="-"; m_empty="-"
  measure "$script" "$@" || fail "startup measurement: $label"
  local sizes
  sizes="$(size_of "$entry")"
  rows+=("$(printf '%-14s %-9s %12s %11s %9s %10s %11s' "$label" "$entry" "$m_import" "$m_process" "$m_empty" "${sizes% *}" "${sizes#* }")")
}
row "Node ${node_main_version%%.*} ESM" node.mjs startup.mjs "$node_main"
row "Node ${node_main_version%%.*} CJS" node.cjs startup.cjs "$node_main"
if [ -n "$node_alt" ]; then
  row "Node ${node_alt_version%%.*} ESM" node.mjs startup.mjs "$node_alt"
  row "Node ${node_alt_version%%.*} CJS" node.cjs startup.cjs "$node_alt"
fi
row "Deno" deno.mjs startup.mjs "${deno_run[@]}"
row "Bun ESM" node.mjs startup.mjs "${bun_run[@]}"
row "Bun CJS" node.cjs startup.cjs "${bun_run[@]}"

echo
note "node $node_main_version${node_alt:+ and $node_alt_version}, deno $(deno --version | sed -n 's/^deno \([^ ]*\).*/\1/p'), bun $(bun --version); tarball $(basename "$tgz"): $tgz_bytes bytes, $file_count files"
printf '   %-14s %-9s %12s %11s %9s %10s %11s\n' "runtime" "entry" "import+new" "process" "empty" "raw B" "gzip -9 B"
printf '   %-14s %-9s %12s %11s %9s %10s %11s\n' "" "" "ms (median)" "ms (wall)" "ms (wall)" "" ""
printf '   %s\n' "${rows[@]}"
# Sizes only: browsers load web.mjs too; workerd.mjs is tested with workerd elsewhere.
sizes="$(size_of workerd.mjs)"
printf '   %-14s %-9s %12s %11s %9s %10s %11s\n' "(workerd)" workerd.mjs "-" "-" "-" "${sizes% *}" "${sizes#* }"
sizes="$(size_of web.mjs)"
printf '   %-14s %-9s %12s %11s %9s %10s %11s\n' "(browsers)" web.mjs "-" "-" "-" "${sizes% *}" "${sizes#* }"

echo
if [ "$failed" != 0 ]; then
  echo "failed:"
  printf '  %s\n' "${failures[@]}"
fi
echo "test-runtimes: $passed passed, $failed failed"
[ "$failed" = 0 ]
