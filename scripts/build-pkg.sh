#!/usr/bin/env bash
# Builds the npm package into pkg/: release wasm -> wasm-opt -> scripts/assemble-pkg.mjs,
# then prints the sizes users download. The wasm has one entry point and no imports
# (src/boundary/); its glue is pkg-template/auth_session.js, written by hand.
#
#   scripts/build-pkg.sh
#
# Environment (defaults: this repository):
#   AUTH_SESSION_CRATE_DIR  the crate to build (e.g. a stub crate while proving the pipeline)
#   CARGO_TARGET_DIR        cargo's target dir (default <crate>/target)
#   AUTH_SESSION_PKG_DIR    where the package goes (default pkg/)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Absolute paths: cargo runs in the crate dir, the rest here.
export AUTH_SESSION_CRATE_DIR="$(realpath -m "${AUTH_SESSION_CRATE_DIR:-$root}")"
crate_dir="$AUTH_SESSION_CRATE_DIR"
target_dir="$(realpath -m "${CARGO_TARGET_DIR:-$crate_dir/target}")"
export AUTH_SESSION_PKG_DIR="$(realpath -m "${AUTH_SESSION_PKG_DIR:-$root/pkg}")"
export AUTH_SESSION_WASM="$target_dir/pkg-wasm/auth_session_bg.wasm"

# The wasm32 target and node_modules (wasm-opt, esbuild); puts them on PATH.
# shellcheck source=ensure-tools.sh
source "$root/scripts/ensure-tools.sh" --

step() { echo "build-pkg: $*" >&2; }

step "cargo build --release --target wasm32-unknown-unknown --lib --features package ($crate_dir)"
(cd "$crate_dir" && CARGO_TARGET_DIR="$target_dir" cargo build --release --target wasm32-unknown-unknown --lib --features package)
# The file is named after the crate (auth-session -> auth_session).
wasm_in="$target_dir/wasm32-unknown-unknown/release/auth_session.wasm"
[ -f "$wasm_in" ] || { echo "build-pkg: no $wasm_in (is the crate named auth-session?)" >&2; exit 1; }

mkdir -p "$(dirname "$AUTH_SESSION_WASM")"

# The features rustc 1.95's default wasm32 CPU ("generic") emits, named explicitly: wasm-opt
# must parse them and may use no others, so the output runs wherever the input did (Node 20
# / V8 11.3 included). wasm-opt also reads them from the target_features section; stating them keeps the build
# correct if that section is ever stripped earlier, and the section is stripped here.
features=(
  --enable-bulk-memory --enable-bulk-memory-opt --enable-call-indirect-overlong
  --enable-multivalue --enable-mutable-globals --enable-nontrapping-float-to-int
  --enable-reference-types --enable-sign-ext
)
# -ocimfs 100: a function with one caller is inlined only when small. Inlining every such
# function (the default) folds the boundary's per-input functions (src/boundary/mod.rs) back
# into one 21 KB function, which the engine compiles whole on the constructor's first step
# (2 ms of Node 20's start-up); this way each input's code compiles on its first use, and
# the module is smaller after gzip (42.3 -> 42.0 KB).
step "wasm-opt -Oz (binaryen $(wasm-opt --version | sed 's/^wasm-opt version //'))"
wasm-opt -Oz -ocimfs 100 "${features[@]}" --strip-debug --strip-producers --strip-target-features \
  "$wasm_in" -o "$AUTH_SESSION_WASM"

step "assemble $AUTH_SESSION_PKG_DIR"
node "$root/scripts/assemble-pkg.mjs"

# --- Sizes -------------------------------------------------------------------------------
pkg="$AUTH_SESSION_PKG_DIR"
size_row() { # label, files...
  local label="$1"; shift
  printf '%-34s %9s %9s\n' "$label" "$(cat "$@" | wc -c)" "$(cat "$@" | gzip -9 | wc -c)"
}
esm_common=("$pkg/auth_session.js" "$pkg/session.js" "$pkg/auth-error.js" "$pkg/encryption.js" "$pkg/pool.js")
echo
printf '%-34s %9s %9s\n' "bytes" "raw" "gzip -9"
size_row "auth_session_bg.wasm (pre-opt)" "$wasm_in"
size_row "auth_session_bg.wasm" "$pkg/auth_session_bg.wasm"
size_row "auth_session.js (glue)" "$pkg/auth_session.js"
size_row "node.mjs (bundled)" "$pkg/node.mjs"
size_row "node.cjs (bundled)" "$pkg/node.cjs"
size_row "workerd.mjs + glue/driver/error" "$pkg/workerd.mjs" "${esm_common[@]}"
size_row "web.mjs + glue/driver/error" "$pkg/web.mjs" "${esm_common[@]}"
size_row "node.mjs: wasm + glue + driver" "$pkg/node.mjs" "$pkg/auth_session_bg.wasm"
size_row "index.d.ts" "$pkg/index.d.ts"
