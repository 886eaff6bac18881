#!/usr/bin/env bash
# Installs what a fresh machine needs to build and test the package, and nothing twice:
#   - the wasm32-unknown-unknown Rust target;
#   - wasm-bindgen-cli (wasm-bindgen, wasm-bindgen-test-runner) at exactly the version of
#     the wasm-bindgen crate in Cargo.lock, cached per version under
#     ${AUTH_SESSION_TOOLS:-$HOME/.cache/auth-session}/wasm-bindgen-<version>;
#   - the root node_modules (binaryen's wasm-opt, esbuild) with `npm ci`;
#   - with --browser: Debian's chromium and chromium-driver, for the browser tests;
#   - with --redis: Debian's redis-server, for the Redis adapter tests (tests/redis/).
#
# Run it (`scripts/ensure-tools.sh [--browser] [--redis]`) or source it to also get the tools on
# PATH (`source scripts/ensure-tools.sh [--browser] [--redis]`). A script that sources it should
# pass `--` so its own arguments are not taken for ours.
#
# Environment:
#   AUTH_SESSION_TOOLS      cache root for the CLI installs (default ~/.cache/auth-session)
#   AUTH_SESSION_CRATE_DIR  crate whose Cargo.lock names the version (default: this repo)

_auth_session_ensure_tools() {
  local root crate_dir cache browser=0 redis=0 arg
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
  crate_dir="${AUTH_SESSION_CRATE_DIR:-$root}"
  cache="${AUTH_SESSION_TOOLS:-$HOME/.cache/auth-session}"

  for arg in "$@"; do
    case "$arg" in
      --browser) browser=1 ;;
      --redis) redis=1 ;;
      --) ;;
      -h|--help)
        sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        return 0 ;;
      *) echo "ensure-tools: unknown argument '$arg' (expected --browser or --redis)" >&2; return 2 ;;
    esac
  done

  local say="ensure-tools:"

  # --- Rust target -------------------------------------------------------------------
  if command -v rustup >/dev/null 2>&1; then
    local installed
    installed="$(rustup target list --installed 2>/dev/null)"
    if printf '%s\n' "$installed" | grep -qx 'wasm32-unknown-unknown'; then
      echo "$say rust target wasm32-unknown-unknown: present" >&2
    else
      echo "$say rust target wasm32-unknown-unknown: rustup target add" >&2
      rustup target add wasm32-unknown-unknown >&2 || return 1
    fi
  elif [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/wasm32-unknown-unknown" ]; then
    echo "$say rust target wasm32-unknown-unknown: present (no rustup)" >&2
  else
    echo "$say rust target wasm32-unknown-unknown is missing and rustup is not installed" >&2
    return 1
  fi

  # --- wasm-bindgen-cli, same version as the crate -----------------------------------
  # The CLI and the crate must match exactly: the CLI reads a schema the macro wrote.
  local version=""
  if [ -f "$crate_dir/Cargo.lock" ]; then
    version="$(awk '
      /^\[\[package\]\]/ { in_wb = 0 }
      /^name = "wasm-bindgen"$/ { in_wb = 1; next }
      in_wb && /^version = / { gsub(/^version = "|"$/, ""); print; in_wb = 0 }
    ' "$crate_dir/Cargo.lock" | sort -u)"
    if [ "$(printf '%s\n' "$version" | grep -c .)" -gt 1 ]; then
      echo "$say Cargo.lock holds several wasm-bindgen versions: $(echo $version)" >&2
      return 1
    fi
  fi
  if [ -z "$version" ]; then
    # No lock yet (fresh clone before the first cargo build): Cargo.toml pins `=x.y.z`,
    # which is what the lock will then hold.
    version="$(sed -n 's/^wasm-bindgen *= *"=\([0-9][0-9.]*\)".*/\1/p' "$crate_dir/Cargo.toml" 2>/dev/null | head -n1)"
    [ -n "$version" ] && echo "$say no wasm-bindgen in Cargo.lock; using the Cargo.toml pin $version" >&2
  fi
  if [ -z "$version" ]; then
    echo "$say cannot tell the wasm-bindgen version (no Cargo.lock entry, no \"=x.y.z\" pin in Cargo.toml)" >&2
    return 1
  fi

  local wb_root="$cache/wasm-bindgen-$version"
  if [ "$("$wb_root/bin/wasm-bindgen" --version 2>/dev/null)" = "wasm-bindgen $version" ] &&
     [ -x "$wb_root/bin/wasm-bindgen-test-runner" ]; then
    echo "$say wasm-bindgen $version: cached in $wb_root" >&2
  else
    mkdir -p "$cache" || return 1
    echo "$say wasm-bindgen $version: cargo install into $wb_root (about 5 minutes)" >&2
    # No --locked: the CLI's own lock names a webpki-roots that the reachable registry
    # lacks (RUNTIMES.md). flock keeps two builds from installing into one root at once;
    # the second one then finds the binary and installs nothing.
    (
      command -v flock >/dev/null 2>&1 && { exec 9>"$cache/.wasm-bindgen-$version.lock"; flock 9; }
      if [ "$("$wb_root/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $version" ] ||
         [ ! -x "$wb_root/bin/wasm-bindgen-test-runner" ]; then
        cargo install wasm-bindgen-cli --version "$version" --root "$wb_root" >&2
      fi
    ) || return 1
    if [ "$("$wb_root/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $version" ]; then
      echo "$say the installed wasm-bindgen does not report version $version" >&2
      return 1
    fi
  fi

  # --- node_modules ------------------------------------------------------------------
  # The stamp is written after a successful `npm ci`; a newer lock means a stale install.
  local stamp="$root/node_modules/.auth-session-npm-ci.stamp"
  if [ -f "$stamp" ] && [ ! "$root/package-lock.json" -nt "$stamp" ] &&
     [ ! "$root/package.json" -nt "$stamp" ]; then
    echo "$say node_modules: up to date with package-lock.json" >&2
  else
    echo "$say node_modules: npm ci" >&2
    (cd "$root" && npm ci --no-audit --no-fund >&2) || return 1
    touch "$stamp" || return 1
  fi
  # The devDependency `node22` (npm:node@22, for wrangler 4 and miniflare, which need
  # Node >= 22) links its binary as node_modules/.bin/node. With that directory first on
  # PATH it would silently replace the system Node (20) for every script and test that says
  # `node`. Node 22 is run by its full path instead (scripts/test-workerd.sh), so drop the link.
  if [ -L "$root/node_modules/.bin/node" ] &&
     [ "$(readlink "$root/node_modules/.bin/node")" = "../node22/bin/node" ]; then
    rm -f "$root/node_modules/.bin/node"
  fi

  # --- Chromium for the browser tests (optional) -------------------------------------
  if [ "$browser" = 1 ]; then
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
      echo "$say chromium: present" >&2
    else
      local sudo=""
      [ "$(id -u)" = 0 ] || sudo="sudo"
      echo "$say chromium: apt-get install chromium chromium-driver" >&2
      $sudo apt-get update >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium chromium-driver >&2 || return 1
    fi
  fi

  # --- redis-server for the Redis adapter tests (optional) --------------------------
  if [ "$redis" = 1 ]; then
    if command -v redis-server >/dev/null 2>&1; then
      echo "$say redis-server: present" >&2
    else
      local sudo=""
      [ "$(id -u)" = 0 ] || sudo="sudo"
      echo "$say redis-server: apt-get install redis-server" >&2
      $sudo apt-get update >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y redis-server >&2 || return 1
    fi
  fi

  # --- PATH --------------------------------------------------------------------------
  local dir
  for dir in "$root/node_modules/.bin" "$wb_root/bin"; do
    case ":$PATH:" in
      *":$dir:"*) ;;
      *) PATH="$dir:$PATH" ;;
    esac
  done
  export PATH
  # `cargo test --target wasm32-unknown-unknown` runs the test binaries through this.
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER:-wasm-bindgen-test-runner}"
  export WASM_BINDGEN_VERSION="$version"
  if [ "$browser" = 1 ] && [ -x /usr/bin/chromedriver ]; then
    export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
  fi
  return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Run as a program: nothing to export, just report success or failure.
  _auth_session_ensure_tools "$@"
  exit $?
else
  # Sourced: the PATH additions stay in the caller's shell; no `exit`, no shell options.
  _auth_session_ensure_tools "$@"
  _auth_session_ensure_tools_rc=$?
  unset -f _auth_session_ensure_tools
  eval "unset _auth_session_ensure_tools_rc; return $_auth_session_ensure_tools_rc"
fi
