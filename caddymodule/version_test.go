package caddymodule

import (
	"runtime/debug"
	"testing"
)

func TestVersionFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"released dependency", debug.BuildInfo{Main: debug.Module{Path: "caddy"},
			Deps: []*debug.Module{{Path: modulePath, Version: "v1.4.0"}}}, "v1.4.0"},
		{"pseudo-version replaced by a directory", debug.BuildInfo{Main: debug.Module{Path: "regcache.build"},
			Deps: []*debug.Module{{Path: modulePath, Version: "v0.0.0-20261206193000-be0de70abcde",
				Replace: &debug.Module{Path: "../.."}}}}, "v0.0.0-20261206193000-be0de70abcde"},
		{"replaced by a version", debug.BuildInfo{Main: debug.Module{Path: "caddy"},
			Deps: []*debug.Module{{Path: modulePath, Version: "v1.0.0",
				Replace: &debug.Module{Path: "example.com/fork", Version: "v1.0.1"}}}}, "v1.0.1"},
		{"xcaddy with a local directory", debug.BuildInfo{Main: debug.Module{Path: "caddy"},
			Deps: []*debug.Module{{Path: modulePath, Version: zeroPseudoVersion, Replace: &debug.Module{Path: "/src/regcache"}}}}, "(devel)"},
		{"main module with git", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "be0de70abcdef0123456789"},
				{Key: "vcs.time", Value: "2026-12-06T19:00:00Z"}, {Key: "vcs.modified", Value: "true"}}},
			"(devel) be0de70abcde+modified 2026-12-06T19:00:00Z"},
		{"main module without git", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}}, "(devel)"},
		{"main module released", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v2.0.0"}}, "v2.0.0"},
		{"not in the build", debug.BuildInfo{Main: debug.Module{Path: "other"}}, "(devel)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionFromBuildInfo(&tc.bi); got != tc.want {
				t.Errorf("versionFromBuildInfo() = %q, want %q", got, tc.want)
			}
		})
	}
}
