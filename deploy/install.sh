#!/usr/bin/env bash
# Installs regcache as a system service:
#   /usr/local/bin/caddy                      the binary (deploy/build.sh, or --binary)
#   /etc/systemd/system/regcache.service      the unit
#   /etc/regcache/Caddyfile, regcache.env     config and settings (kept if present)
#   /etc/regcache/secrets/                    secret files, root only
#   /var/lib/regcache                         state, owned by the user regcache
# then enables and starts the service.
#   deploy/install.sh [--binary PATH]
# With DESTDIR=/some/dir, installs below it and skips the user, ownership
# and systemctl (for packaging and tests).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
if [ "${1:-}" = "--binary" ]; then
	binary="$2"
	shift 2
fi
if [ $# -gt 0 ]; then
	echo "usage: deploy/install.sh [--binary PATH]" >&2
	exit 2
fi
if [ -z "$binary" ]; then
	deploy/build.sh
	binary=./caddy
fi
root="${DESTDIR:-}"

install -D -m 0755 "$binary" "$root/usr/local/bin/caddy"
install -D -m 0644 deploy/systemd/regcache.service "$root/etc/systemd/system/regcache.service"
install -d -m 0755 "$root/etc/regcache"
install -d -m 0700 "$root/etc/regcache/secrets"
for f in Caddyfile regcache.env; do
	if [ -e "$root/etc/regcache/$f" ]; then
		echo "keeping $root/etc/regcache/$f"
	else
		install -m 0644 "deploy/systemd/$f" "$root/etc/regcache/$f"
	fi
done
install -d -m 0750 "$root/var/lib/regcache"

if [ -n "$root" ]; then
	echo "installed below $root"
	exit 0
fi
if ! getent passwd regcache >/dev/null; then
	useradd --system --user-group --home-dir /var/lib/regcache --shell /usr/sbin/nologin \
		--comment "regcache registry mirror" regcache
fi
chown regcache:regcache /var/lib/regcache
/usr/local/bin/caddy adapt --config /etc/regcache/Caddyfile --adapter caddyfile >/dev/null
systemctl daemon-reload
systemctl enable --now regcache.service
echo "regcache is running: systemctl status regcache; journalctl -u regcache"
