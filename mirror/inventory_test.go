package mirror

import (
	"strings"
	"testing"
)

func TestParseImageRef(t *testing.T) {
	dgst := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		in       string
		repoOnly bool
		want     string
		wantErr  bool
	}{
		{"alpine:3.19", false, "docker.io/library/alpine:3.19", false},
		{"alpine", false, "docker.io/library/alpine:latest", false},
		{"alpine", true, "docker.io/library/alpine", false},
		{"docker.io/library/alpine:3.19", false, "docker.io/library/alpine:3.19", false},
		{"index.docker.io/nginx", true, "docker.io/library/nginx", false},
		{"ghcr.io/owner/app@" + dgst, false, "ghcr.io/owner/app@" + dgst, false},
		{"ghcr.io/owner/app", false, "ghcr.io/owner/app:latest", false},
		{"registry.example:5000/team/app:v1", false, "registry.example:5000/team/app:v1", false},
		{"localhost/app:1", false, "localhost/app:1", false},
		{"owner/app:1", false, "docker.io/owner/app:1", false},
		{"Alpine:3", false, "", true},
		{"alpine:-bad", false, "", true},
		{"alpine@sha256:abc", false, "", true},
		{"", false, "", true},
	}
	for _, tc := range tests {
		got, err := ParseImageRef(tc.in, DockerHub, tc.repoOnly)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseImageRef(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got.String() != tc.want {
			t.Errorf("ParseImageRef(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
