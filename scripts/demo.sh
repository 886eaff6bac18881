#!/usr/bin/env bash
# The main job: build the npm package, start the local reference server with 6-second
# access tokens, and run the Node service example against it (it logs in, serves a few
# requests, refreshes ahead of expiry, revokes, and exits).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/build-pkg.sh

# The example imports "auth-session" as a user would; point that name at the built package.
mkdir -p www-example/node_modules
ln -sfn ../../pkg www-example/node_modules/auth-session

log="$(mktemp)"
node tests/server/reference-server.mjs --port 0 --access-ttl 6 --user demo:demo-password >"$log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q '^REFERENCE_SERVER_URL=' "$log" && break
  sleep 0.1
done
url="$(sed -n 's/^REFERENCE_SERVER_URL=//p' "$log")"
[ -n "$url" ] || { echo "demo: the reference server did not start" >&2; exit 1; }
echo "demo: reference server at $url (access tokens live 6 s)"

DEMO=1 API_HOST="$url" REFRESH_MARGIN_SECONDS=2 node www-example/node-service.mjs
