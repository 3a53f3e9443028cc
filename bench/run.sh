#!/usr/bin/env bash
# Benchmarks regcache against its peers on this machine, in one run, and
# prints a table of figures and ratios (regcache ÷ peer). See BENCHMARKS.md.
#
#   bench/run.sh                 the full run: a 512 MiB blob, 3 rounds
#   QUICK=1 bench/run.sh         a smoke run: a 64 MiB blob, 1 round, short wrk,
#                                a 4x40 MiB bad-link image cut every 12 MiB
#   SIZE=268435456 ROUNDS=5 ...  another blob size (bytes) or number of rounds
#   BADLINK_ONLY=1 bench/run.sh  the bad-link scenarios only
#   ONLY=cold1,warm bench/run.sh only these scenarios (of cold20, cold20count,
#                                cold1, badlink, warm, manifest, startup)
#   BASE_CADDY=/path/caddy ...   also run an earlier build of regcache, as
#                                "regcache-base", beside this one in the
#                                cold and warm blob scenarios (before/after)
#   LAYER_SIZE=... CUT=... CAP=... the bad-link image's layer size, the bytes
#                                after which every transfer is cut, and the
#                                cap of each connection in bytes per second
#
# Peers: nginx (Debian) as a /v2/ caching reverse proxy (proxy_cache with
# proxy_cache_lock, following the upstream's 307 to the CDN itself) and as
# a static file server (sendfile), and the distribution registry in proxy
# mode. The upstream is the Docker-Hub-like test front (token realm, 307
# blob redirects to a CDN listener) on loopback. Scenarios run for each
# server alternately (A B A B), and the medians are reported.
#
# The bad-link scenarios pull a 4-layer image (bench/pull: the Docker
# daemon's way, 3 blobs at once, a broken body continued with Range up to
# 5 tries) cold through each server and straight from the upstream, while
# the upstream's CDN caps every TCP connection at $CAP bytes/s, or cuts
# every transfer (Range answers too) after $CUT bytes. They report the
# time and the bytes each moved upstream.
#
# Installs what is missing (apt-get: nginx-light, wrk, gnuplot-nox; go
# install: the distribution registry v3.1.2), builds ./caddy with
# ./xcaddy.sh, and stops everything it started on exit. Results, logs and
# the chart go to $OUT (default bench/out); the work directory ($WORK,
# default a temporary directory) is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

QUICK="${QUICK:-0}"
if [ "$QUICK" = 1 ]; then
	SIZE="${SIZE:-67108864}"
	ROUNDS="${ROUNDS:-1}"
	WRK_SECONDS="${WRK_SECONDS:-3}"
	LAYER_SIZE="${LAYER_SIZE:-41943040}"
	CUT="${CUT:-12582912}"
else
	SIZE="${SIZE:-536870912}"
	ROUNDS="${ROUNDS:-3}"
	WRK_SECONDS="${WRK_SECONDS:-8}"
	LAYER_SIZE="${LAYER_SIZE:-104857600}"
	CUT="${CUT:-33554432}"
fi
CAP="${CAP:-20000000}"
BADLINK_ONLY="${BADLINK_ONLY:-0}" # 1: only the bad-link scenarios
ONLY="${ONLY:-}"                 # comma-separated scenarios; empty: all
[ "$BADLINK_ONLY" = 1 ] && ONLY=badlink
BASE_CADDY="${BASE_CADDY:-}"     # an earlier ./caddy, run beside this one
CLIENTS="${CLIENTS:-20}"
WARM_REPEAT="${WARM_REPEAT:-3}" # warm downloads per round and server: each is short
OUT="${OUT:-$ROOT/bench/out}"
WORK="${WORK:-$(mktemp -d /tmp/regcache-bench.XXXXXX)}"
REGISTRY_VERSION=v3.1.2

# Ports on 127.0.0.1.
P_RC=18480        # regcache, HTTP, recommended server options
P_RC_DEFAULT=18481 # regcache, HTTP, Caddy's default server options
P_RC_TLS=18482    # regcache, HTTPS (tls internal), recommended options
P_NGX=18483       # nginx proxy_cache
P_NGX_STATIC=18484 # nginx static files
P_DIST=18485      # distribution registry, proxy mode
P_RC_CHUNK=18486  # regcache, HTTP, write idle timeout kept, 4 MiB write chunks
P_RC_BASE=18487   # the earlier build of regcache (BASE_CADDY), recommended options

mkdir -p "$OUT" "$WORK"
RESULTS="$OUT/results.tsv"
: >"$RESULTS"

# The processes this script started, by id; each is cleared when stopped.
UP_PID="" RC_PID="" BASE_PID="" NGINX_PID="" DIST_PID=""
cleanup() {
	set +e
	for p in "$RC_PID" "$BASE_PID" "$NGINX_PID" "$DIST_PID" "$UP_PID"; do
		[ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }

# ---------------------------------------------------------------- install
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
		apt-get update -qq
		apt-get install -y -qq "${missing[@]}" >/dev/null
	}
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
GOBIN="$(go env GOPATH)/bin"
REGISTRY="$GOBIN/registry"
if ! [ -x "$REGISTRY" ] || ! "$REGISTRY" --version 2>/dev/null | grep -q "$REGISTRY_VERSION"; then
	log "installing the distribution registry $REGISTRY_VERSION"
	GOBIN="$GOBIN" go install "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
fi

log "building ./caddy and the bench programs"
./xcaddy.sh >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; exit 1; }
go build -o "$WORK/upstream" ./bench/upstream
go build -o "$WORK/load" ./bench/load
go build -o "$WORK/pull" ./bench/pull

# ---------------------------------------------------------------- helpers
wait_http() { # url [tries]
	local i
	for i in $(seq 1 "${2:-300}"); do
		curl -ks -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "no answer from $1" >&2
	return 1
}
state() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/upstream.json" "$1"; }
counter() { curl -s "$CONTROL/counters" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
reset_counters() { curl -s -X POST "$CONTROL/reset" >/dev/null; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
record() { # scenario server metric value
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
}
# want scenario: whether ONLY selects it.
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
# cpu_ticks pid...: the user and system CPU time of the processes so far,
# in clock ticks.
cpu_ticks() {
	local p t=0
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}
TICKS=$(getconf CLK_TCK)
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- upstream
log "starting the upstream with a $SIZE-byte blob"
"$WORK/upstream" -size "$SIZE" -state "$WORK/upstream.json" -static "$WORK/static" \
	-layers 4 -layer-size "$LAYER_SIZE" >"$OUT/upstream.log" 2>&1 &
UP_PID=$!
for _ in $(seq 1 1200); do [ -f "$WORK/upstream.json" ] && break; sleep 0.1; done
[ -f "$WORK/upstream.json" ] || { echo "the upstream did not start" >&2; cat "$OUT/upstream.log" >&2; exit 1; }
FRONT=$(state front)
JOINED_FRONT=$(state joined_front) # the front and the realm on one port, for distribution
CDN_PORT=$(state cdn_port)
CONTROL=$(state control)
TOKEN=$(state token)
BIG=$(state big_digest)
SMALL=$(state small_manifest)
SMALL_TYPE=$(state small_type)
BLOB_PATH="/v2/bench/big/blobs/$BIG"
MANIFEST_PATH="/v2/bench/small/manifests/$SMALL"
BADLINK_REPO=$(state badlink_repo)
BADLINK_BYTES=$(state badlink_bytes)

# ---------------------------------------------------------------- regcache
start_regcache() {
	cat >"$WORK/Caddyfile" <<EOF
{
	admin off
	skip_install_trust
	storage file_system $WORK/caddy-data
	log {
		output file $OUT/caddy.log
		level WARN
	}
	# Recommended: no per-write idle deadline (it splits every write and
	# sendfile into 64 KiB pieces); a plain write timeout is not set either,
	# since it would bound a whole large download.
	servers 127.0.0.1:$P_RC {
		timeouts {
			write_idle -1s
		}
	}
	servers 127.0.0.1:$P_RC_TLS {
		timeouts {
			write_idle -1s
		}
	}
	# The alternative: keep the stall timeout, in larger pieces.
	servers 127.0.0.1:$P_RC_CHUNK {
		timeouts {
			write_max_chunk 4MiB
		}
	}
}
(cache) {
	registry_cache {
		storage $WORK/regcache
		max_size 64GiB
		upstream docker.io http://${FRONT#http://}
	}
}
http://127.0.0.1:$P_RC {
	bind 127.0.0.1
	import cache
}
http://127.0.0.1:$P_RC_DEFAULT {
	bind 127.0.0.1
	import cache
}
http://127.0.0.1:$P_RC_CHUNK {
	bind 127.0.0.1
	import cache
}
https://127.0.0.1:$P_RC_TLS {
	bind 127.0.0.1
	tls internal
	import cache
}
EOF
	./caddy run --config "$WORK/Caddyfile" --adapter caddyfile >>"$OUT/caddy.out" 2>&1 &
	RC_PID=$!
	wait_http "http://127.0.0.1:$P_RC/v2/"
	wait_http "https://127.0.0.1:$P_RC_TLS/v2/"
}
stop_regcache() {
	[ -n "$RC_PID" ] || return 0
	kill "$RC_PID" 2>/dev/null || true
	wait "$RC_PID" 2>/dev/null || true
	RC_PID=""
}
cold_regcache() { stop_regcache; rm -rf "$WORK/regcache"; start_regcache; }

# The earlier build (BASE_CADDY), on one plain-HTTP site with the
# recommended options and a cache of its own.
start_base() {
	[ -n "$BASE_CADDY" ] || return 0
	cat >"$WORK/Caddyfile.base" <<EOF
{
	admin off
	skip_install_trust
	storage file_system $WORK/caddy-data-base
	log {
		output file $OUT/caddy-base.log
		level WARN
	}
	servers 127.0.0.1:$P_RC_BASE {
		timeouts {
			write_idle -1s
		}
	}
}
http://127.0.0.1:$P_RC_BASE {
	bind 127.0.0.1
	registry_cache {
		storage $WORK/regcache-base
		max_size 64GiB
		upstream docker.io http://${FRONT#http://}
	}
}
EOF
	"$BASE_CADDY" run --config "$WORK/Caddyfile.base" --adapter caddyfile >>"$OUT/caddy-base.out" 2>&1 &
	BASE_PID=$!
	wait_http "http://127.0.0.1:$P_RC_BASE/v2/"
}
stop_base() {
	[ -n "$BASE_PID" ] || return 0
	kill "$BASE_PID" 2>/dev/null || true
	wait "$BASE_PID" 2>/dev/null || true
	BASE_PID=""
}
cold_base() { stop_base; rm -rf "$WORK/regcache-base"; start_base; }

# ---------------------------------------------------------------- nginx
start_nginx() {
	mkdir -p "$WORK/nginx/tmp" "$WORK/nginx/cache"
	# The workers run as www-data (Debian's default user): they must reach
	# the static files and write the cache.
	chmod 755 "$WORK"
	chown -R www-data "$WORK/nginx/tmp" "$WORK/nginx/cache"
	cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $OUT/nginx-error.log warn;
daemon off;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	default_type application/octet-stream;
	client_body_temp_path $WORK/nginx/tmp/body;
	proxy_temp_path $WORK/nginx/tmp/proxy;
	fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
	uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
	scgi_temp_path $WORK/nginx/tmp/scgi;
	proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=registry:32m max_size=64g inactive=7d use_temp_path=off;

	upstream front { server ${FRONT#http://}; keepalive 32; }
	upstream cdn { server 127.0.0.1:$CDN_PORT; keepalive 32; }
	map \$saved_location \$cdn_path { ~^https?://[^/]+(?<p>/.*)\$ \$p; default /; }

	# /v2/ caching reverse proxy. A blob GET is answered 307 by the front;
	# the redirect is followed here, without the Authorization header, and
	# the CDN's answer is cached under the request's URI. The lock lets
	# one request fill; the others wait (lock timeout and age past the
	# fill time), then read the cached file.
	server {
		listen 127.0.0.1:$P_NGX;
		proxy_http_version 1.1;
		proxy_set_header Connection "";
		proxy_cache registry;
		proxy_cache_key \$uri;
		proxy_cache_valid 200 7d;
		proxy_cache_lock on;
		proxy_cache_lock_timeout 30m;
		proxy_cache_lock_age 30m;
		location /v2/ {
			proxy_pass http://front;
			proxy_set_header Host ${FRONT#http://};
			proxy_set_header Authorization "Bearer $TOKEN";
			proxy_intercept_errors on;
			error_page 307 = @cdn;
		}
		location @cdn {
			set \$saved_location \$upstream_http_location;
			proxy_pass http://cdn\$cdn_path;
			proxy_set_header Host localhost:$CDN_PORT;
			proxy_set_header Authorization "";
		}
	}
	# Static files with sendfile: the practical limit of this machine.
	server {
		listen 127.0.0.1:$P_NGX_STATIC;
		root $WORK/static;
	}
}
EOF
	"$NGINX" -c "$WORK/nginx/nginx.conf" -e "$OUT/nginx-error.log" >>"$OUT/nginx.out" 2>&1 &
	NGINX_PID=$!
	wait_http "http://127.0.0.1:$P_NGX_STATIC/"
}
stop_nginx() {
	[ -n "$NGINX_PID" ] || return 0
	kill "$NGINX_PID" 2>/dev/null || true
	wait "$NGINX_PID" 2>/dev/null || true
	NGINX_PID=""
}
cold_nginx() { stop_nginx; rm -rf "$WORK/nginx/cache"; start_nginx; }

# ---------------------------------------------------------------- distribution
start_dist() {
	cat >"$WORK/dist.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/dist
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$P_DIST
proxy:
  remoteurl: $JOINED_FRONT
EOF
	OTEL_TRACES_EXPORTER=none "$REGISTRY" serve "$WORK/dist.yml" >>"$OUT/distribution.log" 2>&1 &
	DIST_PID=$!
	wait_http "http://127.0.0.1:$P_DIST/v2/"
}
stop_dist() {
	[ -n "$DIST_PID" ] || return 0
	kill "$DIST_PID" 2>/dev/null || true
	wait "$DIST_PID" 2>/dev/null || true
	DIST_PID=""
}
cold_dist() { stop_dist; rm -rf "$WORK/dist"; start_dist; }

start_regcache
start_base
start_nginx
start_dist
# The servers of the cold and warm blob scenarios that are regcache.
REGCACHES="regcache"
[ -n "$BASE_CADDY" ] && REGCACHES="regcache regcache-base"

url_of() { # server path
	case "$1" in
	regcache) echo "http://127.0.0.1:$P_RC$2" ;;
	regcache-defaults) echo "http://127.0.0.1:$P_RC_DEFAULT$2" ;;
	regcache-chunk) echo "http://127.0.0.1:$P_RC_CHUNK$2" ;;
	regcache-tls) echo "https://127.0.0.1:$P_RC_TLS$2" ;;
	regcache-base) echo "http://127.0.0.1:$P_RC_BASE$2" ;;
	nginx) echo "http://127.0.0.1:$P_NGX$2" ;;
	nginx-static) echo "http://127.0.0.1:$P_NGX_STATIC$2" ;;
	distribution) echo "http://127.0.0.1:$P_DIST$2" ;;
	upstream) echo "$FRONT$2" ;;
	esac
}
pid_of() {
	case "$1" in
	regcache-base) echo "$BASE_PID" ;;
	regcache*) echo "$RC_PID" ;;
	distribution) echo "$DIST_PID" ;;
	*) echo "" ;; # nginx: several processes; not measured
	esac
}

# ---------------------------------------------------------------- scenarios
# warm: one client, HTTP/1.1 (HTTP/2 for regcache-h2), the whole blob.
warm_blob() { # server round
	local server=$1 url extra=() out
	case "$server" in
	regcache-h2) url=$(url_of regcache-tls "$BLOB_PATH"); extra=(-h2) ;;
	*) url=$(url_of "$server" "$BLOB_PATH") ;;
	esac
	out=$("$WORK/load" -url "$url" -n 1 -size "$SIZE" "${extra[@]}") || echo "warm $server: $out" >&2
	record warm "$server" mb_s "$(field "$out" mb_s)"
}

cold_many() { # server [scenario]: every client verifies the digest, or
	# with scenario cold20count only counts the bytes (the clients' hashing
	# of 20 copies on the same two cores dominates the verifying run)
	local server=$1 scen=${2:-cold20} out hwm pid verify=(-digest "$BIG")
	[ "$scen" = cold20count ] && verify=()
	case "$server" in
	regcache) cold_regcache ;;
	regcache-base) cold_base ;;
	nginx) cold_nginx ;;
	distribution) cold_dist ;;
	esac
	pid=$(pid_of "$server")
	reset_counters
	out=$("$WORK/load" -url "$(url_of "$server" "$BLOB_PATH")" -n "$CLIENTS" "${verify[@]}" -size "$SIZE") || {
		echo "cold $server: $out" >&2
	}
	local fetches body_start first_max ok wall
	fetches=$(counter cdn_get)
	body_start=$(counter cdn_body_start)
	first_max=$(field "$out" first_byte_max)
	ok=$(field "$out" ok)
	wall=$(field "$out" wall_s)
	record "$scen" "$server" wall_s "$wall"
	record "$scen" "$server" ok "$ok"
	record "$scen" "$server" upstream_fetches "$fetches"
	record "$scen" "$server" upstream_bytes "$(counter cdn_bytes)"
	record "$scen" "$server" mb_s "$(field "$out" mb_s)"
	if [ "$body_start" -gt 0 ]; then
		record "$scen" "$server" first_byte_lag_s "$(python3 -c "print(($first_max - $body_start) / 1e9)")"
	fi
	if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
		hwm=$(hwm_kib "$pid")
		record "$scen" "$server" peak_rss_mib "$(python3 -c "print($hwm / 1024)")"
	fi
}

cold_one() { # server
	local server=$1 out url token=() procs=() c0 u0 c1 u1
	case "$server" in
	regcache) cold_regcache; url=$(url_of regcache "$BLOB_PATH"); procs=("$RC_PID") ;;
	regcache-base) cold_base; url=$(url_of regcache-base "$BLOB_PATH"); procs=("$BASE_PID") ;;
	nginx) cold_nginx; url=$(url_of nginx "$BLOB_PATH"); mapfile -t procs < <(echo "$NGINX_PID"; pgrep -P "$NGINX_PID") ;;
	upstream) url=$(url_of upstream "$BLOB_PATH"); token=(-token "$TOKEN") ;;
	esac
	reset_counters
	c0=$(cpu_ticks "${procs[@]}") u0=$(cpu_ticks "$UP_PID")
	out=$(/usr/bin/time -f '%U %S' -o "$WORK/client.time" "$WORK/load" -url "$url" -n 1 -digest "$BIG" -size "$SIZE" "${token[@]}") ||
		echo "cold $server: $out" >&2
	c1=$(cpu_ticks "${procs[@]}") u1=$(cpu_ticks "$UP_PID")
	# CPU seconds of the server, the upstream and the client: on two cores
	# shared by all three, their sum bounds the wall time from below.
	if [ "${#procs[@]}" -gt 0 ]; then
		record cold1 "$server" server_cpu_s "$(python3 -c "print(($c1 - $c0) / $TICKS)")"
	fi
	record cold1 "$server" upstream_cpu_s "$(python3 -c "print(($u1 - $u0) / $TICKS)")"
	record cold1 "$server" client_cpu_s "$(awk '{print $1 + $2}' "$WORK/client.time")"
	record cold1 "$server" wall_s "$(field "$out" wall_s)"
	record cold1 "$server" upstream_bytes "$(counter cdn_bytes)"
	record cold1 "$server" mb_s "$(field "$out" mb_s)"
}

manifest() { # server
	local server=$1 out rps p99
	out=$(wrk -t2 -c32 -d"${WRK_SECONDS}s" --latency -H "Accept: $SMALL_TYPE" "$(url_of "$server" "$MANIFEST_PATH")")
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	if grep -q 'Non-2xx' <<<"$out"; then
		echo "manifest $server: non-2xx answers" >&2
		echo "$out" >&2
		rps=0
	fi
	record manifest "$server" rps "$rps"
	record manifest "$server" p99_ms "$(python3 -c "
s='$p99'
for u, f in (('us', 1e-3), ('ms', 1), ('s', 1e3)):
    if s.endswith(u):
        print(float(s[:-len(u)]) * f); break")"
}

# ---------------------------------------------------------------- run
if want cold20; then
	log "cold, $CLIENTS clients at once ($REGCACHES, nginx, distribution)"
	for r in $(seq 1 "$ROUNDS"); do
		for s in $REGCACHES nginx distribution; do cold_many "$s"; done
	done
fi
if want cold20count; then
	log "cold, $CLIENTS clients at once, counting bytes only ($REGCACHES, nginx)"
	for r in $(seq 1 "$ROUNDS"); do
		for s in $REGCACHES nginx; do cold_many "$s" cold20count; done
	done
fi
if want cold1; then
	log "cold, one client ($REGCACHES, straight from the upstream, nginx)"
	for r in $(seq 1 "$ROUNDS"); do
		for s in $REGCACHES upstream nginx; do cold_one "$s"; done
	done
fi

set_fault() { curl -fsS -X POST -d "$1" "$CONTROL/fault" >/dev/null; }
badlink_pull() { # scenario fault-json server
	local scen=$1 fault=$2 server=$3 out url token=()
	case "$server" in
	regcache) cold_regcache; url="http://127.0.0.1:$P_RC" ;;
	nginx) cold_nginx; url="http://127.0.0.1:$P_NGX" ;;
	distribution) cold_dist; url="http://127.0.0.1:$P_DIST" ;;
	upstream) url=$FRONT; token=(-token "$TOKEN") ;;
	esac
	reset_counters
	set_fault "$fault"
	out=$("$WORK/pull" -registry "$url" -repo "$BADLINK_REPO" "${token[@]}") || echo "$scen $server: $out" >&2
	set_fault '{"kind": "none"}'
	record "$scen" "$server" wall_s "$(field "$out" wall_s)"
	record "$scen" "$server" ok "$(python3 -c "import json,sys; print(int(json.loads(sys.argv[1])['ok']))" "$out")"
	record "$scen" "$server" upstream_bytes "$(counter cdn_bytes)"
	record "$scen" "$server" upstream_fetches "$(counter cdn_get)"
}
if want badlink; then
	record meta badlink image_bytes "$BADLINK_BYTES"
	record meta badlink cut "$CUT"
	record meta badlink cap "$CAP"
	log "bad link: every connection capped at $CAP bytes/s, first pull of 4 layers (regcache, nginx, distribution, straight from the upstream)"
	for r in $(seq 1 "$ROUNDS"); do
		for s in regcache nginx distribution upstream; do
			badlink_pull badcap "{\"kind\": \"conn-bandwidth\", \"bytes_per_second\": $CAP}" "$s"
		done
	done
	log "bad link: every transfer cut after $CUT bytes, first pull of 4 layers (regcache, nginx, distribution, straight from the upstream)"
	for r in $(seq 1 "$ROUNDS"); do
		for s in regcache nginx distribution upstream; do
			badlink_pull baddrops "{\"kind\": \"cut\", \"after\": $CUT}" "$s"
		done
	done
fi

if want warm || want manifest; then
	log "warming every server"
	for s in $REGCACHES nginx distribution; do
		"$WORK/load" -url "$(url_of "$s" "$BLOB_PATH")" -n 1 -digest "$BIG" >/dev/null || echo "warming $s failed" >&2
		curl -fsS -o /dev/null -H "Accept: $SMALL_TYPE" "$(url_of "$s" "$MANIFEST_PATH")" || echo "warming $s failed" >&2
	done
	reset_counters
fi
if want warm; then
	log "warm blob, one client"
	for r in $(seq 1 $((ROUNDS * WARM_REPEAT))); do
		for s in $REGCACHES nginx nginx-static regcache-defaults regcache-chunk regcache-tls regcache-h2 distribution; do
			warm_blob "$s"
		done
	done
	record warm all upstream_fetches "$(counter cdn_get)"
fi
if want manifest; then
	log "warm manifest by digest, 32 connections"
	for r in $(seq 1 "$ROUNDS"); do
		for s in regcache nginx distribution; do manifest "$s"; done
	done
fi
if want startup; then
	log "start-up with 100,000 cached objects (cache.Open to the first object served)"
	startup=$(go test ./cache/ -run '^$' -bench '^BenchmarkOpenLargeCache$' -benchtime 3x -count 1 |
		awk '/^BenchmarkOpenLargeCache/ {print $3 / 1e9}')
	record startup regcache seconds "$startup"
	log "start-up of ./caddy with the warm cache until the first blob is served"
	stop_regcache
	t0=$(date +%s.%N)
	start_regcache
	curl -fsS -o /dev/null "$(url_of regcache "$BLOB_PATH")"
	record startup regcache-process seconds "$(python3 -c "print($(date +%s.%N) - $t0)")"
fi

stop_regcache
stop_base
stop_nginx
stop_dist

# ---------------------------------------------------------------- report
python3 "$ROOT/bench/report.py" "$RESULTS" "$OUT" "$SIZE" "$CLIENTS" "$ROUNDS"
if want warm && want cold20 && want cold1 && command -v gnuplot >/dev/null; then
	gnuplot -e "out='$OUT'" "$ROOT/bench/chart.gp" && log "chart: $OUT/chart.svg"
fi
