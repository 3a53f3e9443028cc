package mirror

import "testing"

func TestRegistryOrigin(t *testing.T) {
	tests := []struct {
		name   string
		origin string
		ok     bool
	}{
		{"docker.io", "registry-1.docker.io", true},
		{"index.docker.io", "registry-1.docker.io", true},
		{"GHCR.io", "ghcr.io", true},
		{"registry.k8s.io", "registry.k8s.io", true},
		{"registry.example:5000", "registry.example:5000", true},
		{"localhost", "localhost", true},
		{"localhost:5000", "localhost:5000", true},
		{"internal", "", false},
		{"corp-mirror", "", false},
	}
	for _, tc := range tests {
		origin, ok := RegistryOrigin(tc.name)
		if origin != tc.origin || ok != tc.ok {
			t.Errorf("RegistryOrigin(%q) = %q, %v; want %q, %v", tc.name, origin, ok, tc.origin, tc.ok)
		}
	}
}
