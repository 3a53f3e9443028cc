#!/usr/bin/env bash
# Checks regcache.service as far as a machine without systemd as PID 1
# allows (CI runs it as root):
#   1. deploy/install.sh into a staging root (DESTDIR);
#   2. systemd-analyze verify of the installed unit (any warning fails);
#   3. the unit's ExecStart run for real, in a private mount namespace where
#      /etc, /usr/local/bin, /var/lib and /run look as the installation makes
#      them, as an unprivileged user, with the unit's Environment= and
#      EnvironmentFile= and no capabilities: the mirror must answer /healthz
#      and /v2/, and ExecReload (caddy reload) must apply the config again.
#   deploy/systemd/check.sh [BINARY]      (default: ./caddy, built if missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="$(realpath "${1:-./caddy}")"
[ -x "$binary" ] || deploy/build.sh -o "$binary"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
DESTDIR="$root" deploy/install.sh --binary "$binary" >/dev/null
unit="$root/etc/systemd/system/regcache.service"

echo "== systemd-analyze verify"
mkdir -p "$root/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
out="$(systemd-analyze verify --root="$root" regcache.service 2>&1)" || true
if [ -n "$out" ]; then
	echo "$out" >&2
	exit 1
fi
systemd-analyze security --offline=true --root="$root" regcache.service | tail -1

echo "== ExecStart and ExecReload as the unit runs them"
# A loopback port nothing answers on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}
port="$(free_port)"
admin="$(free_port)"
while [ "$admin" = "$port" ]; do admin="$(free_port)"; done
cat >>"$root/etc/regcache/regcache.env" <<ENV
REGCACHE_SITE=http://127.0.0.1:$port
REGCACHE_ADMIN=127.0.0.1:$admin
ENV
value() { sed -n "s/^$1=//p" "$unit"; }
exec_start="$(value ExecStart)"
exec_reload="$(value ExecReload)"
read -ra unit_env <<<"$(value Environment)"
mapfile -t file_env < <(grep -v '^#' "$root/etc/regcache/regcache.env" | grep .)
# The unit's user: uid and gid 65534 (nobody) stand in for regcache.
inside=(unshare --mount --propagation private bash -ec '
	root=$1; shift
	mount --bind "$root/etc" /etc
	mount --bind "$root/usr/local/bin" /usr/local/bin
	mount -t tmpfs -o mode=0755 tmpfs /var/lib
	install -d -m 0750 -o 65534 -g 65534 /var/lib/regcache
	mount -t tmpfs -o mode=0755 tmpfs /run
	install -d -m 0700 -o 65534 -g 65534 /run/credentials/regcache.service
	exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --no-new-privs \
		env -i PATH=/usr/bin:/bin "$@"' _ "$root")
log="$stage/caddy.log"
"${inside[@]}" "${unit_env[@]}" "${file_env[@]}" $exec_start >"$log" 2>&1 &
pid=$!
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap 'stop; rm -rf "$stage"' EXIT
# get PATH: the response (status line, headers, body) of the mirror, over
# bash's /dev/tcp (no HTTP client needed).
get() {
	exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" "$port" >&3
	tr -d '\r' <&3
	exec 3<&-
}
for _ in $(seq 100); do
	get /healthz 2>/dev/null | head -1 | grep -q ' 200' && break
	kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "ExecStart exited" >&2; exit 1; }
	sleep 0.2
done
get /healthz | head -1 | grep -q ' 200' || { cat "$log" >&2; echo "no /healthz" >&2; exit 1; }
get /v2/ | grep -qi '^docker-distribution-api-version: registry/2.0' || {
	cat "$log" >&2
	echo "/v2/ does not answer as a registry" >&2
	exit 1
}
grep -q 'XDG_DATA_HOME=/var/lib/regcache' "$log" # --environ printed the unit's environment
"${inside[@]}" "${unit_env[@]}" "${file_env[@]}" $exec_reload
grep -q '"load complete"' "$log"
echo "ExecStart served /healthz and /v2/ on 127.0.0.1:$port as uid 65534; ExecReload applied the config"
