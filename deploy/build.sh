#!/usr/bin/env bash
# Builds Caddy with its standard modules and regcache from this working
# tree, as a static binary (CGO_ENABLED=0), reproducibly: the same tree and
# Go give the same bytes.
#   deploy/build.sh                         ./caddy for this machine
#   deploy/build.sh -o OUT [OS/ARCH]        OUT for another platform (linux/arm64)
# The version shown by `caddy version`, `caddy list-modules --versions` and
# the status page is REGCACHE_VERSION, else a Go pseudo-version of the git
# commit (v0.0.0-<commit time>-<revision>), else v0.0.0-00010101000000-000000000000.
# Needs only Go; modules come from the module cache or GOPROXY.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

out="$root/caddy"
if [ "${1:-}" = "-o" ]; then
	out="$(realpath -m "$2")"
	shift 2
fi
platform="${1:-$(go env GOOS)/$(go env GOARCH)}"
goos="${platform%%/*}"
goarch="${platform#*/}"

version="$(deploy/version.sh)"

# The binary is built as a dependency of a small main module, as xcaddy
# does, so that Go records regcache's version in the build information
# (list-modules --versions reads it there). The module sits at a fixed
# place in the tree, so that the recorded replacement path (../..) is the
# same on every machine.
build="$root/dist/.build"
mkdir -p "$build"
cp deploy/caddy/main.go "$build/main.go"
# Its requirements are this module's own (same versions, same go.sum), so
# the build needs nothing beyond what building this tree needs: offline
# once the module cache holds it.
{
	echo "module regcache.build/caddy"
	sed -e '/^module /d' -e '/^tool /d' go.mod
	echo
	echo "require github.com/regcache/regcache $version"
	echo
	echo "replace github.com/regcache/regcache => ../.."
} >"$build/go.mod"
cp go.sum "$build/go.sum"
(
	cd "$build"
	CGO_ENABLED=0 GOOS="$goos" GOARCH="$goarch" GOFLAGS=-mod=mod go build -trimpath -buildvcs=false \
		-ldflags "-s -w -buildid= -X github.com/regcache/regcache/caddymodule.buildVersion=$version" \
		-o "$out" .
)
echo "built $out (regcache $version, $goos/$goarch)"
