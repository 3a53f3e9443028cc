package upstream

import (
	"context"
	"strings"
	"testing"
)

func TestCredentialID(t *testing.T) {
	anon := mustNew(t, Config{Name: "a", Endpoints: []string{"http://127.0.0.1:1"}}, Options{})
	configured := mustNew(t, Config{Name: "a", Endpoints: []string{"http://127.0.0.1:1"}, Username: "bob", Password: secret}, Options{})
	bg := context.Background()
	tests := []struct {
		name  string
		c     *Client
		ctx   context.Context
		empty bool
	}{
		{"anonymous", anon, bg, true},
		{"configured", configured, bg, false},
		{"passed through", anon, WithCredentials(bg, "alice", secret), false},
		{"passed-through anonymous overrides configured", configured, WithCredentials(bg, "", ""), true},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.c.CredentialID(tc.ctx)
			if (id == "") != tc.empty || strings.Contains(id, secret) || strings.Contains(id, "bob") || strings.Contains(id, "alice") {
				t.Errorf("CredentialID = %q, want empty %v and nothing of the credentials", id, tc.empty)
			}
			if other, dup := seen[id]; dup && id != "" {
				t.Errorf("CredentialID %q of %s equals that of %s", id, tc.name, other)
			}
			seen[id] = tc.name
		})
	}
}
