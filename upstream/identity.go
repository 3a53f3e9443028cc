package upstream

import (
	"context"
	"net/http"
)

// Credentials are what a request authenticates with, passed explicitly
// in its Request. The zero Credentials stand for the configured ones;
// Login makes a client's own, which replace them. They never show in a
// log or an error: CredentialID names them without revealing them.
type Credentials struct {
	cred credentials
	// own is set by Login: the configured credentials are not used.
	own bool
}

// Login returns a client's own credentials (a login passed through the
// mirror), which replace the configured ones; empty ones make the request
// anonymous. Tokens are cached per credential.
func Login(username, password string) Credentials {
	return Credentials{cred: credentials{username, password}, own: true}
}

// Own reports whether cred are a client's own (see Login) rather than
// the configured ones.
func (cred Credentials) Own() bool { return cred.own }

// CredentialID identifies, without revealing them, the credentials that
// requests made with cred authenticate with: cred when they are a
// client's own, else the configured ones. It is empty for anonymous
// requests. Caches of upstream answers key on it, so that what the
// upstream told one credential (a private repository looks missing to an
// anonymous client) is never replayed to another.
func (c *Client) CredentialID(cred Credentials) string {
	if cred.own {
		return cred.cred.id()
	}
	return c.defaultID
}

// DefaultCredentialID is CredentialID for requests that carry no
// credentials of their own: the configured credentials' identity, or empty
// when the client is configured without any.
func (c *Client) DefaultCredentialID() string {
	return c.defaultID
}

// Verify checks cred against the registry: it asks for the API root with
// them, going through the registry's token dance. It returns nil when the
// registry accepted them (or asked for none), and an *Error with status
// 401 when it refused them.
func (c *Client) Verify(ctx context.Context, cred Credentials) error {
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, Credentials: cred})
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	return nil
}
