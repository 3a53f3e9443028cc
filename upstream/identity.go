package upstream

import "context"

// CredentialID identifies, without revealing them, the credentials that
// requests made with ctx authenticate with: those of WithCredentials, else
// the configured ones. It is empty for anonymous requests. Caches of
// upstream answers key on it, so that what the upstream told one credential
// (a private repository looks missing to an anonymous client) is never
// replayed to another.
func (c *Client) CredentialID(ctx context.Context) string {
	return c.credentialsFor(ctx).id()
}
