#!/usr/bin/env bash
# Builds regcache's container image for linux/amd64 and linux/arm64 into
# dist/, offline and without a base image or container engine:
#   dist/oci/                          OCI image layout, multi-platform index
#   dist/regcache-linux-amd64.tar      for docker load and podman load
#   dist/regcache-linux-arm64.tar
# The image: a static caddy with regcache (deploy/build.sh), the CA
# certificates of Debian's ca-certificates package, a non-root user
# (1000:1000), the /data volume (cache and Caddy's data), port 5000, and
# deploy/image/Caddyfile as /etc/caddy/Caddyfile (a Docker Hub mirror).
# Reproducible: the same commit, Go, Caddyfile and CA certificates give the
# same digests. SOURCE_DATE_EPOCH (default: the commit's time) sets every
# timestamp; PLATFORMS="linux/amd64" builds fewer platforms; OUT=DIR writes
# into DIR instead of dist/.
set -euo pipefail
cd "$(dirname "$0")/.."

platforms="${PLATFORMS:-linux/amd64 linux/arm64}"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH="$(git log -1 --format=%ct HEAD 2>/dev/null || echo 0)"
fi
export SOURCE_DATE_EPOCH
revision="$(git rev-parse HEAD 2>/dev/null || true)"
out="${OUT:-dist}"
mkdir -p "$out"

bins=()
version=""
for p in $platforms; do
	bin="$out/caddy-${p//\//-}"
	line="$(deploy/build.sh -o "$bin" "$p")"
	echo "$line"
	# "built OUT (regcache VERSION, OS/ARCH)"
	version="$(sed -n 's/.*(regcache \([^,]*\),.*/\1/p' <<<"$line")"
	bins+=(-binary "$p=$bin")
done

go run ./deploy/imagebuild "${bins[@]}" -version "$version" -revision "$revision" \
	-source-date-epoch "$SOURCE_DATE_EPOCH" -caddyfile deploy/image/Caddyfile \
	-ca-dir /usr/share/ca-certificates/mozilla -out "$out"
