#!/usr/bin/env bash
# Builds ./caddy: Caddy with the registry_cache module from this working tree.
#   ./xcaddy.sh        build ./caddy and check that the module and Caddyfile.example load
#   ./xcaddy.sh run    build, then run ./caddy with Caddyfile.example
# Needs only Go: xcaddy is a pinned tool of this module (go tool xcaddy).
set -euo pipefail
cd "$(dirname "$0")"

# The Caddy release built into ./caddy.
CADDY_VERSION="${CADDY_VERSION:-v2.11.9}"
MODULE="github.com/regcache/regcache"

# xcaddy first asks the module proxy about this module's own path. Some
# proxies answer an unknown path with 400/403 instead of 404, which Go treats
# as final after a ','. A '|' falls through to the next entry on any error,
# and the local replacement then wins.
# 'direct' is dropped: it would ask git for this module and fail for good.
proxies=""
IFS=',|' read -ra entries <<<"$(go env GOPROXY)"
for p in "${entries[@]}"; do
	case "$p" in direct | off | "") ;; *) proxies="${proxies:+$proxies|}$p" ;; esac
done
export GOPROXY="${proxies:+$proxies|}off"

# regcache's version, shown by `caddy version` and the status page (a
# local directory gives Go no version to record).
if [ -z "${XCADDY_GO_BUILD_FLAGS:-}" ]; then
	export XCADDY_GO_BUILD_FLAGS="-trimpath -ldflags '-w -s -X $MODULE/caddymodule.buildVersion=$(deploy/version.sh)'"
fi

go tool xcaddy build "$CADDY_VERSION" --with "$MODULE=./" --output ./caddy

# grep reads the whole list (no -q): stopping at the first match would
# leave list-modules writing into a closed pipe, which pipefail reports.
./caddy list-modules | grep -x 'http.handlers.registry_cache' >/dev/null || {
	echo "xcaddy.sh: ./caddy does not contain http.handlers.registry_cache" >&2
	exit 1
}
./caddy validate --config Caddyfile.example --adapter caddyfile >/dev/null

if [ "${1:-}" = "run" ]; then
	exec ./caddy run --config Caddyfile.example --adapter caddyfile
fi
echo "built ./caddy (Caddy $CADDY_VERSION with registry_cache)"
