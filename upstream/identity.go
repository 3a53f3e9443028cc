package upstream

import (
	"context"
	"net/http"
)

// CredentialID identifies, without revealing them, the credentials that
// requests made with ctx authenticate with: those of WithCredentials, else
// the configured ones. It is empty for anonymous requests. Caches of
// upstream answers key on it, so that what the upstream told one credential
// (a private repository looks missing to an anonymous client) is never
// replayed to another.
func (c *Client) CredentialID(ctx context.Context) string {
	if cred, ok := ctx.Value(credentialsKey{}).(credentials); ok {
		return cred.id()
	}
	return c.defaultID
}

// DefaultCredentialID is CredentialID for requests that carry no
// credentials of their own: the configured credentials' identity, or empty
// when the client is configured without any.
func (c *Client) DefaultCredentialID() string {
	return c.defaultID
}

// HasOwnCredentials reports whether ctx carries credentials of its own
// (see WithCredentials), which replace the configured ones.
func HasOwnCredentials(ctx context.Context) bool {
	_, ok := ctx.Value(credentialsKey{}).(credentials)
	return ok
}

// CopyCredentials returns dst carrying the credentials of src, if src has
// its own (see WithCredentials): a fill that runs on a context detached
// from its client still authenticates as that client.
func CopyCredentials(dst, src context.Context) context.Context {
	if cred, ok := src.Value(credentialsKey{}).(credentials); ok {
		return context.WithValue(dst, credentialsKey{}, cred)
	}
	return dst
}

// Verify checks the credentials of ctx against the registry: it asks for
// the API root with them, going through the registry's token dance. It
// returns nil when the registry accepted them (or asked for none), and an
// *Error with status 401 when it refused them.
func (c *Client) Verify(ctx context.Context) error {
	resp, err := c.Do(ctx, Request{Method: http.MethodGet})
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	return nil
}
