package caddymodule

import (
	"runtime/debug"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// modulePath is the Go module of regcache.
const modulePath = "github.com/regcache/regcache"

// buildVersion is regcache's version as the build stamped it:
//
//	go build -ldflags '-X github.com/regcache/regcache/caddymodule.buildVersion=v1.2.3'
//
// deploy/build.sh sets it from git. Empty: the version comes from the
// binary's build information (see Version).
var buildVersion string

func init() {
	// `caddy version` prints Caddy's CustomVersion before Caddy's own
	// version: "regcache v1.2.3 caddy v2.11.9 h1:…".
	caddy.CustomVersion = strings.TrimSpace("regcache " + Version() + " caddy " + caddy.CustomVersion)
}

// Version is regcache's version in this binary: the stamped buildVersion,
// else the version of the regcache module the binary was built with (a
// release, or a pseudo-version), else the git revision of a build in the
// regcache tree, else "(devel)".
func Version() string {
	if buildVersion != "" {
		return buildVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	return versionFromBuildInfo(bi)
}

// zeroPseudoVersion is the version Go gives a required module replaced by a
// directory without a version (xcaddy --with module=./).
const zeroPseudoVersion = "v0.0.0-00010101000000-000000000000"

// versionFromBuildInfo derives regcache's version from a binary's build
// information.
func versionFromBuildInfo(bi *debug.BuildInfo) string {
	for _, dep := range bi.Deps {
		if dep.Path != modulePath {
			continue
		}
		if dep.Replace != nil && dep.Replace.Version != "" {
			return dep.Replace.Version
		}
		if dep.Version != "" && dep.Version != zeroPseudoVersion && dep.Version != "(devel)" {
			return dep.Version
		}
		return "(devel)"
	}
	if bi.Main.Path == modulePath && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	if bi.Main.Path == modulePath {
		var rev, when, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = "+modified"
				}
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			return strings.TrimSpace("(devel) " + rev + modified + " " + when)
		}
	}
	return "(devel)"
}
