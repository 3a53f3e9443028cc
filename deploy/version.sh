#!/usr/bin/env bash
# Prints regcache's version for a build of this tree: REGCACHE_VERSION if
# set, else a Go pseudo-version of the git commit
# (v0.0.0-<commit time, UTC>-<12 hex digits of the revision>), else
# v0.0.0-00010101000000-000000000000 outside git.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${REGCACHE_VERSION:-}" ]; then
	echo "$REGCACHE_VERSION"
elif rev="$(git rev-parse --short=12 HEAD 2>/dev/null)"; then
	echo "v0.0.0-$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)-$rev"
else
	echo "v0.0.0-00010101000000-000000000000"
fi
