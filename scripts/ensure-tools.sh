#!/usr/bin/env bash
# Installs what a fresh machine needs to build and test the package, and nothing twice:
#   - the wasm32-unknown-unknown Rust target;
#   - the root node_modules (binaryen's wasm-opt, esbuild) with `npm ci`;
#   - with --browser: Debian's chromium and chromium-driver, for the browser tests;
#   - with --redis: Debian's redis-server, for the Redis adapter tests (tests/redis/).
#
# Run it (`scripts/ensure-tools.sh [--browser] [--redis]`) or source it to also get the tools on
# PATH (`source scripts/ensure-tools.sh [--browser] [--redis]`). A script that sources it should
# pass `--` so its own arguments are not taken for ours.
#
# The wasm needs no wasm-bindgen: its glue (pkg-template/auth_session.js) is written by hand
# for its one entry point (src/boundary/).

_auth_session_ensure_tools() {
  local root browser=0 redis=0 arg
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1

  for arg in "$@"; do
    case "$arg" in
      --browser) browser=1 ;;
      --redis) redis=1 ;;
      --) ;;
      -h|--help)
        sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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
  for dir in "$root/node_modules/.bin"; do
    case ":$PATH:" in
      *":$dir:"*) ;;
      *) PATH="$dir:$PATH" ;;
    esac
  done
  export PATH
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
