package caddymodule

import (
	"reflect"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    Handler
		wantErr bool
	}{
		{name: "bare directive", input: `registry_cache`, want: Handler{}},
		{
			name: "every option",
			input: `registry_cache {
				storage /var/lib/regcache
				max_size 50GiB
				memory 256MiB
				tag_ttl 5m
				stale_if_error 24h
				negative_ttl 1m
				rate_limit_reserve 10
				default ghcr.io
				upstream docker.io https://registry-1.docker.io {
					username {env.HUB_USER}
					password {env.HUB_TOKEN}
				}
				upstream ghcr.io
			}`,
			want: Handler{
				Storage:          "/var/lib/regcache",
				MaxSize:          50 << 30,
				Memory:           256 << 20,
				TagTTL:           caddy.Duration(5 * time.Minute),
				StaleIfError:     caddy.Duration(24 * time.Hour),
				NegativeTTL:      caddy.Duration(time.Minute),
				RateLimitReserve: 10,
				Default:          "ghcr.io",
				Upstreams: []Upstream{
					{Name: "docker.io", URLs: []string{"https://registry-1.docker.io"}, Username: "{env.HUB_USER}", Password: "{env.HUB_TOKEN}"},
					{Name: "ghcr.io"},
				},
			},
		},
		{
			name: "shared bucket",
			input: `registry_cache {
				storage /var/lib/regcache {
					s3 {
						endpoint http://10.0.0.5:7070
						bucket regcache
						region eu-west-1
						access_key {env.S3_KEY}
						secret_key {env.S3_SECRET}
						prefix office/
						path_style
						lease_ttl 10s
						chunk_size 16MiB
					}
				}
			}`,
			want: Handler{Storage: "/var/lib/regcache", S3: &S3Storage{
				Endpoint: "http://10.0.0.5:7070", Bucket: "regcache", Region: "eu-west-1",
				AccessKey: "{env.S3_KEY}", SecretKey: "{env.S3_SECRET}", Prefix: "office/", PathStyle: true,
				LeaseTTL: caddy.Duration(10 * time.Second), ChunkSize: 16 << 20,
			}},
		},
		{
			name:  "shared bucket, default directory",
			input: "registry_cache {\n storage {\n s3 {\n endpoint s3.example.com\n bucket b\n }\n }\n }",
			want:  Handler{S3: &S3Storage{Endpoint: "s3.example.com", Bucket: "b"}},
		},
		{
			name:    "storage without directory or block",
			input:   "registry_cache {\n storage\n }",
			wantErr: true,
		},
		{
			name:    "unknown s3 option",
			input:   "registry_cache {\n storage /d {\n s3 {\n endpoint h\n bucket b\n acl public\n }\n }\n }",
			wantErr: true,
		},
		{
			name:    "unknown storage option",
			input:   "registry_cache {\n storage /d {\n gcs {\n }\n }\n }",
			wantErr: true,
		},
		{
			name: "several endpoints",
			input: `registry_cache {
				upstream registry.example.com {
					url https://relay.example.net
					url https://registry.example.com
				}
			}`,
			want: Handler{Upstreams: []Upstream{{Name: "registry.example.com",
				URLs: []string{"https://relay.example.net", "https://registry.example.com"}}}},
		},
		{name: "plain byte sizes", input: "registry_cache {\nmax_size 1048576\n}", want: Handler{MaxSize: 1 << 20}},
		{
			name:  "upstream timeouts",
			input: "registry_cache {\nconnect_timeout 3s\nresponse_timeout 1m\nstall_timeout 500ms\n}",
			want: Handler{ConnectTimeout: caddy.Duration(3 * time.Second), ResponseTimeout: caddy.Duration(time.Minute),
				StallTimeout: caddy.Duration(500 * time.Millisecond)},
		},
		{name: "bad timeout", input: "registry_cache {\nstall_timeout never\n}", wantErr: true},
		{
			name:  "trusted realms",
			input: "registry_cache {\nupstream reg.example {\ntrusted_realm auth.example.net\ntrusted_realm login.example.org\n}\n}",
			want: Handler{Upstreams: []Upstream{{Name: "reg.example",
				TrustedRealms: []string{"auth.example.net", "login.example.org"}}}},
		},
		{
			name: "max_idle and sync rules",
			input: `registry_cache {
				max_idle 30d
				sync docker.io/library/alpine {
					tags 3.* latest
					tags ~edge-[0-9]+
					semver >=1.25 <2
					newest 3
					platforms linux/amd64 linux/arm64
					every 6h
				}
				sync ghcr.io/owner/app:1.2
			}`,
			want: Handler{
				MaxIdle: caddy.Duration(30 * 24 * time.Hour),
				Sync: []SyncRule{
					{Image: "docker.io/library/alpine", Tags: []string{"3.*", "latest", "~edge-[0-9]+"}, Semver: []string{">=1.25", "<2"},
						Newest: 3, Platforms: []string{"linux/amd64", "linux/arm64"}, Every: caddy.Duration(6 * time.Hour)},
					{Image: "ghcr.io/owner/app:1.2"},
				},
			},
		},
		{name: "sync without image", input: "registry_cache {\nsync\n}", wantErr: true},
		{name: "sync with two images", input: "registry_cache {\nsync a b\n}", wantErr: true},
		{name: "sync unknown option", input: "registry_cache {\nsync a {\nkeep 3\n}\n}", wantErr: true},
		{name: "sync newest not a number", input: "registry_cache {\nsync a {\nnewest many\n}\n}", wantErr: true},
		{name: "sync newest twice", input: "registry_cache {\nsync a {\nnewest 1 2\n}\n}", wantErr: true},
		{name: "sync tags without value", input: "registry_cache {\nsync a {\ntags\n}\n}", wantErr: true},
		{name: "bad max_idle", input: "registry_cache {\nmax_idle forever\n}", wantErr: true},
		{name: "argument on directive", input: `registry_cache foo`, wantErr: true},
		{name: "unknown option", input: "registry_cache {\nfrobnicate yes\n}", wantErr: true},
		{name: "storage without value", input: "registry_cache {\nstorage\n}", wantErr: true},
		{name: "bad size", input: "registry_cache {\nmax_size lots\n}", wantErr: true},
		{name: "negative size", input: "registry_cache {\nmemory -5\n}", wantErr: true},
		{name: "bad duration", input: "registry_cache {\ntag_ttl soon\n}", wantErr: true},
		{name: "bad stale duration", input: "registry_cache {\nstale_if_error later\n}", wantErr: true},
		{name: "limits", input: "registry_cache {\nmax_downloads 8\nmax_upstream_requests 16\n}", want: Handler{MaxDownloads: 8, MaxUpstreamRequests: 16}},
		{name: "bad limit", input: "registry_cache {\nmax_downloads many\n}", wantErr: true},
		{name: "a bad link", input: "registry_cache {\nfill_retries 9\nfill_connections 6\nfill_split_size 64MiB\ningest_max_size 1GiB\ningest_max_age 2h\n}",
			want: Handler{FillRetries: 9, FillConnections: 6, FillSplitSize: 64 << 20, IngestMaxSize: 1 << 30, IngestMaxAge: caddy.Duration(2 * time.Hour)}},
		{name: "prefetch off", input: "registry_cache {\nprefetch off\n}", want: Handler{DisablePrefetch: true}},
		{name: "prefetch on", input: "registry_cache {\nprefetch on\n}", want: Handler{}},
		{name: "bad prefetch", input: "registry_cache {\nprefetch maybe\n}", wantErr: true},
		{name: "bad fill retries", input: "registry_cache {\nfill_retries -1\n}", wantErr: true},
		{name: "bad ingest size", input: "registry_cache {\ningest_max_size lots\n}", wantErr: true},
		{name: "access ttl", input: "registry_cache {\naccess_ttl 90s\n}", want: Handler{AccessTTL: caddy.Duration(90 * time.Second)}},
		{name: "bad access ttl", input: "registry_cache {\naccess_ttl soon\n}", wantErr: true},
		{name: "client login off", input: "registry_cache {\nclient_login off\n}", want: Handler{DisableClientLogin: true}},
		{name: "client login on", input: "registry_cache {\nclient_login on\n}", want: Handler{}},
		{name: "client login maybe", input: "registry_cache {\nclient_login maybe\n}", wantErr: true},
		{name: "token realm", input: "registry_cache {\ntoken_realm https://m.example/v2/_token\n}", want: Handler{TokenRealm: "https://m.example/v2/_token"}},
		{name: "token realm without value", input: "registry_cache {\ntoken_realm\n}", wantErr: true},
		{name: "negative ttl off", input: "registry_cache {\nnegative_ttl off\n}", want: Handler{NegativeTTL: -1}},
		{name: "negative ttl zero is off", input: "registry_cache {\nnegative_ttl 0\n}", want: Handler{NegativeTTL: -1}},
		{name: "negative ttl", input: "registry_cache {\nnegative_ttl 200ms\n}", want: Handler{NegativeTTL: caddy.Duration(200 * time.Millisecond)}},
		{name: "bad negative ttl", input: "registry_cache {\nnegative_ttl never\n}", wantErr: true},
		{name: "negative negative ttl", input: "registry_cache {\nnegative_ttl -5s\n}", wantErr: true},
		{name: "negative ttl without value", input: "registry_cache {\nnegative_ttl\n}", wantErr: true},
		{name: "scrub settings", input: "registry_cache {\nscrub_interval 24h\nscrub_rate 100MiB/s\n}",
			want: Handler{ScrubInterval: caddy.Duration(24 * time.Hour), ScrubRate: 100 << 20}},
		{name: "scrub rate without /s", input: "registry_cache {\nscrub_rate 10MB\n}", want: Handler{ScrubRate: 10_000_000}},
		{name: "slow source rate", input: "registry_cache {\nslow_source_rate 512KiB/s\n}", want: Handler{SlowSourceRate: 512 << 10}},
		{name: "slow source rate without /s", input: "registry_cache {\nslow_source_rate 4MB\n}", want: Handler{SlowSourceRate: 4_000_000}},
		{name: "scrub off", input: "registry_cache {\nscrub_interval off\n}", want: Handler{ScrubInterval: -1}},
		{name: "scrub interval zero", input: "registry_cache {\nscrub_interval 0\n}", wantErr: true},
		{name: "bad scrub interval", input: "registry_cache {\nscrub_interval weekly\n}", wantErr: true},
		{name: "scrub rate zero", input: "registry_cache {\nscrub_rate 0\n}", wantErr: true},
		{name: "bad scrub rate", input: "registry_cache {\nscrub_rate fast\n}", wantErr: true},
		{name: "scrub rate without value", input: "registry_cache {\nscrub_rate\n}", wantErr: true},
		{name: "slow source rate zero", input: "registry_cache {\nslow_source_rate 0\n}", wantErr: true},
		{name: "bad slow source rate", input: "registry_cache {\nslow_source_rate slow\n}", wantErr: true},
		{name: "slow source rate without value", input: "registry_cache {\nslow_source_rate\n}", wantErr: true},
		{name: "reserve zero", input: "registry_cache {\nrate_limit_reserve 0\n}", want: Handler{}},
		{name: "negative reserve", input: "registry_cache {\nrate_limit_reserve -1\n}", wantErr: true},
		{name: "bad reserve", input: "registry_cache {\nrate_limit_reserve some\n}", wantErr: true},
		{name: "reserve without value", input: "registry_cache {\nrate_limit_reserve\n}", wantErr: true},
		{name: "extra argument", input: "registry_cache {\nstorage a b\n}", wantErr: true},
		{name: "upstream without name", input: "registry_cache {\nupstream\n}", wantErr: true},
		{name: "upstream with two urls inline", input: "registry_cache {\nupstream a.io https://a https://b\n}", wantErr: true},
		{name: "unknown upstream option", input: "registry_cache {\nupstream a.io {\ntoken x\n}\n}", wantErr: true},
		{name: "policy", input: "registry_cache {\nallow docker.io/library/* ghcr.io/acme/**\ndeny a.io/x\ndeny b.io/y:*-rc*\ndeny_digest sha256:ab\nverify ghcr.io/acme/** a.io/b {\nkey /k1.pub\nkey /k2.pub\nidentity me@x.example https://issuer.example\ntrusted_root /root.json\nmode audit\nverdict_ttl 1m\n}\nupstream ghcr.io {\nallow tools/*\ndeny tools/old\nverify tools/* {\nkey /t.pub\n}\n}\n}",
			want: Handler{
				Allow: []string{"docker.io/library/*", "ghcr.io/acme/**"}, Deny: []string{"a.io/x", "b.io/y:*-rc*"}, DenyDigest: []string{"sha256:ab"},
				Verify: []Verify{{Patterns: []string{"ghcr.io/acme/**", "a.io/b"}, Keys: []string{"/k1.pub", "/k2.pub"},
					Identities: []Identity{{Subject: "me@x.example", Issuer: "https://issuer.example"}}, TrustedRoot: "/root.json", Mode: "audit", VerdictTTL: caddy.Duration(time.Minute)}},
				Upstreams: []Upstream{{Name: "ghcr.io", Allow: []string{"tools/*"}, Deny: []string{"tools/old"}, Verify: []Verify{{Patterns: []string{"tools/*"}, Keys: []string{"/t.pub"}}}}},
			}},
		{name: "allow without pattern", input: "registry_cache {\nallow\n}", wantErr: true},
		{name: "verify without pattern", input: "registry_cache {\nverify {\nkey /k\n}\n}", wantErr: true},
		{name: "verify without trust", input: "registry_cache {\nverify a.io/b {\nmode audit\n}\n}", wantErr: true},
		{name: "verify bad mode", input: "registry_cache {\nverify a.io/b {\nkey /k\nmode maybe\n}\n}", wantErr: true},
		{name: "identity without issuer", input: "registry_cache {\nverify a.io/b {\nidentity me@x\n}\n}", wantErr: true},
		{name: "unknown verify option", input: "registry_cache {\nverify a.io/b {\nkey /k\ncert /c\n}\n}", wantErr: true},
		{name: "login limit off", input: "registry_cache {\nlogin_limit off\n}", want: Handler{LoginLimit: &LoginLimit{Off: true}}},
		{name: "login limit", input: "registry_cache {\nlogin_limit {\nburst 5\ninterval 30s\ntotal_burst 50\ntotal_interval 2s\n}\n}",
			want: Handler{LoginLimit: &LoginLimit{Burst: 5, Interval: caddy.Duration(30 * time.Second), TotalBurst: 50, TotalInterval: caddy.Duration(2 * time.Second)}}},
		{name: "login limit on", input: "registry_cache {\nlogin_limit on\n}", wantErr: true},
		{name: "login limit zero burst", input: "registry_cache {\nlogin_limit {\nburst 0\n}\n}", wantErr: true},
		{name: "login limit bad interval", input: "registry_cache {\nlogin_limit {\ninterval soon\n}\n}", wantErr: true},
		{name: "login limit unknown option", input: "registry_cache {\nlogin_limit {\nrate 5\n}\n}", wantErr: true},
		{name: "allowed networks", input: "registry_cache {\nallowed_networks 10.0.0.0/8 fd00::/8\nallowed_networks 169.254.170.2\n}",
			want: Handler{AllowedNetworks: []string{"10.0.0.0/8", "fd00::/8", "169.254.170.2"}}},
		{name: "allowed networks without value", input: "registry_cache {\nallowed_networks\n}", wantErr: true},
		{name: "bad allowed network", input: "registry_cache {\nallowed_networks office\n}", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Handler
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if (err != nil) != tc.wantErr {
				t.Fatalf("UnmarshalCaddyfile(%q) error = %v, wantErr %v", tc.input, err, tc.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("UnmarshalCaddyfile(%q) = %+v, want %+v", tc.input, got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		h       Handler
		wantErr bool
	}{
		{"zero value", Handler{}, false},
		{"negative max size", Handler{MaxSize: -1}, true},
		{"negative memory", Handler{Memory: -1}, true},
		{"negative ttl", Handler{TagTTL: -1}, true},
		{"negative stale limit", Handler{StaleIfError: -1}, true},
		{"negative ttl off", Handler{NegativeTTL: -1}, false},
		{"negative reserve", Handler{RateLimitReserve: -1}, true},
		{"reserve", Handler{RateLimitReserve: 20}, false},
		{"negative scrub rate", Handler{ScrubRate: -1}, true},
		{"scrub off", Handler{ScrubInterval: -1}, false},
		{"negative stall timeout", Handler{StallTimeout: -1}, true},
		{"negative connect timeout", Handler{ConnectTimeout: -1}, true},
		{"negative access ttl", Handler{AccessTTL: -1}, true},
		{"negative max downloads", Handler{MaxDownloads: -1}, true},
		{"negative fill retries", Handler{FillRetries: -1}, true},
		{"negative fill connections", Handler{FillConnections: -1}, true},
		{"negative split size", Handler{FillSplitSize: -1}, true},
		{"negative slow source rate", Handler{SlowSourceRate: -1}, true},
		{"negative ingest size", Handler{IngestMaxSize: -1}, true},
		{"negative ingest age", Handler{IngestMaxAge: -1}, true},
		{"token realm", Handler{TokenRealm: "https://m.example/v2/_token"}, false},
		{"relative token realm", Handler{TokenRealm: "/v2/_token"}, true},
		{"token realm of another scheme", Handler{TokenRealm: "ftp://m.example/t"}, true},
		{"duplicate upstream", Handler{Upstreams: []Upstream{{Name: "docker.io"}, {Name: "registry-1.docker.io"}}}, true},
		{"empty upstream name", Handler{Upstreams: []Upstream{{Name: ""}}}, true},
		{"relative url", Handler{Upstreams: []Upstream{{Name: "a.io", URLs: []string{"a.io/v2"}}}}, true},
		{"ftp url", Handler{Upstreams: []Upstream{{Name: "a.io", URLs: []string{"ftp://a.io"}}}}, true},
		{"http url", Handler{Upstreams: []Upstream{{Name: "a.io", URLs: []string{"http://127.0.0.1:5000"}}}}, false},
		{"default not configured", Handler{Default: "ghcr.io", Upstreams: []Upstream{{Name: "docker.io"}}}, true},
		{"default configured", Handler{Default: "ghcr.io", Upstreams: []Upstream{{Name: "docker.io"}, {Name: "ghcr.io"}}}, false},
		{"s3", Handler{S3: &S3Storage{Endpoint: "http://h:1", Bucket: "b"}}, false},
		{"s3 without bucket", Handler{S3: &S3Storage{Endpoint: "http://h:1"}}, true},
		{"s3 without endpoint", Handler{S3: &S3Storage{Bucket: "b"}}, true},
		{"s3 lease below 2s", Handler{S3: &S3Storage{Endpoint: "h", Bucket: "b", LeaseTTL: caddy.Duration(time.Second)}}, true},
		{"s3 negative chunk", Handler{S3: &S3Storage{Endpoint: "h", Bucket: "b", ChunkSize: -1}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			if (err != nil) != tc.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func TestUpstreamURLs(t *testing.T) {
	tests := []struct {
		u    Upstream
		want []string
	}{
		{Upstream{Name: "docker.io"}, []string{"https://registry-1.docker.io"}},
		{Upstream{Name: "index.docker.io"}, []string{"https://registry-1.docker.io"}},
		{Upstream{Name: "ghcr.io"}, []string{"https://ghcr.io"}},
		{Upstream{Name: "registry.example.com:5000"}, []string{"https://registry.example.com:5000"}},
		{Upstream{Name: "docker.io", URLs: []string{"http://127.0.0.1:1"}}, []string{"http://127.0.0.1:1"}},
	}
	for _, tc := range tests {
		if got := upstreamURLs(tc.u); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("upstreamURLs(%+v) = %v, want %v", tc.u, got, tc.want)
		}
	}
}

func TestS3TierConfigResolvesPlaceholders(t *testing.T) {
	t.Setenv("REGCACHE_TEST_KEY", "AKIAEXAMPLE")
	t.Setenv("REGCACHE_TEST_SECRET", "s3cr3t")
	tests := []struct {
		name, in, want string
	}{
		{"access key variable", "{env.REGCACHE_TEST_KEY}", "AKIAEXAMPLE"},
		{"secret key variable", "{env.REGCACHE_TEST_SECRET}", "s3cr3t"},
		{"literal", "plain", "plain"},
		{"unset variable", "{env.REGCACHE_TEST_UNSET}", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &S3Storage{Endpoint: "http://h:1", Bucket: "b", AccessKey: tc.in, SecretKey: tc.in}
			cfg := s.tierConfig(caddy.NewReplacer())
			if cfg.AccessKey != tc.want || cfg.SecretKey != tc.want {
				t.Errorf("tierConfig(%q) = access %q, secret %q; want %q", tc.in, cfg.AccessKey, cfg.SecretKey, tc.want)
			}
		})
	}
}
