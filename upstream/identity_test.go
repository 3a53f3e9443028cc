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
	tests := []struct {
		name  string
		c     *Client
		cred  Credentials
		empty bool
	}{
		{"anonymous", anon, Credentials{}, true},
		{"configured", configured, Credentials{}, false},
		{"passed through", anon, Login("alice", secret), false},
		{"passed-through anonymous overrides configured", configured, Login("", ""), true},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.c.CredentialID(tc.cred)
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

func TestOwnCredentials(t *testing.T) {
	configured := mustNew(t, Config{Name: "a", Endpoints: []string{"http://127.0.0.1:1"}, Username: "bob", Password: secret}, Options{})
	tests := []struct {
		name      string
		cred      Credentials
		own       bool
		isDefault bool // CredentialID equals DefaultCredentialID
	}{
		{"no credentials of its own", Credentials{}, false, true},
		{"its own", Login("alice", "pw"), true, false},
		{"its own, the configured ones", Login("bob", secret), true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cred.Own(); got != tc.own {
				t.Errorf("Own = %v, want %v", got, tc.own)
			}
			if got := configured.CredentialID(tc.cred) == configured.DefaultCredentialID(); got != tc.isDefault {
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
		cred       Credentials
		wantStatus int // 0: accepted
	}{
		{"anonymous", Credentials{}, 0},
		{"right password", Login("alice", secret), 0},
		{"wrong password", Login("alice", "nope"), http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Verify(bg, tc.cred)
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
