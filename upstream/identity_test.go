package upstream

import (
	"context"
	"errors"
	"net/http"
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

func TestOwnCredentialsTravel(t *testing.T) {
	configured := mustNew(t, Config{Name: "a", Endpoints: []string{"http://127.0.0.1:1"}, Username: "bob", Password: secret}, Options{})
	bg := context.Background()
	own := WithCredentials(bg, "alice", "pw")
	tests := []struct {
		name      string
		ctx       context.Context
		own       bool
		isDefault bool // CredentialID equals DefaultCredentialID
	}{
		{"no credentials of its own", bg, false, true},
		{"its own", own, true, false},
		{"copied onto a detached context", CopyCredentials(context.WithoutCancel(bg), own), true, false},
		{"nothing to copy", CopyCredentials(bg, bg), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HasOwnCredentials(tc.ctx); got != tc.own {
				t.Errorf("HasOwnCredentials = %v, want %v", got, tc.own)
			}
			if got := configured.CredentialID(tc.ctx) == configured.DefaultCredentialID(); got != tc.isDefault {
				t.Errorf("identity is the default: %v, want %v", got, tc.isDefault)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	f := newFakeHub(t)
	c := mustNew(t, Config{Name: "hub", Endpoints: []string{f.registry.URL}, TrustedRealmHosts: []string{"127.0.0.1"}}, Options{})
	bg := context.Background()
	tests := []struct {
		name       string
		ctx        context.Context
		wantStatus int // 0: accepted
	}{
		{"anonymous", bg, 0},
		{"right password", WithCredentials(bg, "alice", secret), 0},
		{"wrong password", WithCredentials(bg, "alice", "nope"), http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Verify(tc.ctx)
			var ue *Error
			switch {
			case tc.wantStatus == 0 && err != nil:
				t.Errorf("Verify = %v, want nil", err)
			case tc.wantStatus != 0 && (!errors.As(err, &ue) || ue.Status != tc.wantStatus):
				t.Errorf("Verify = %v, want an *Error with status %d", err, tc.wantStatus)
			}
			if err != nil && strings.Contains(err.Error(), "nope") {
				t.Errorf("the error %q shows the password", err)
			}
		})
	}
}
