package access

// Principal is the identity a request is made for at one upstream, as
// that upstream sees it: the credentials it authenticates with (a
// client's own, else the mirror's configured ones, else none), by an ID
// that does not reveal them. It is a value, carried with the request's
// target and passed down explicitly, never in a context. What an upstream answers one identity (a private repository looks
// missing to a client without access) is never another's, so every
// remembered answer is keyed by the identity it was given to (see Key).
// The zero Principal is anonymous at an upstream the mirror reaches
// anonymously.
type Principal struct {
	// id identifies the credentials, empty for anonymous requests.
	id string
	// def is the id of the upstream's default identity: the mirror's
	// configured credentials, empty when it has none.
	def string
}

// NewPrincipal returns the identity whose credentials have ID id (empty
// for anonymous), at an upstream whose default identity (the mirror's
// configured credentials, or anonymous) has ID def. Both IDs must not
// reveal the credentials (a hash, say).
func NewPrincipal(id, def string) Principal {
	return Principal{id: id, def: def}
}

// ID identifies the identity's credentials without revealing them; it is
// empty for anonymous requests. Records of what an upstream allowed (a
// Grant) hold it.
func (i Principal) ID() string { return i.id }

// IsDefault reports whether the identity is the upstream's default one:
// the mirror's own credentials (or anonymous, when it has none), whose
// decisions are kept on disk and count for every client.
func (i Principal) IsDefault() bool { return i.id == i.def }

// Default returns the default identity of i's upstream.
func (i Principal) Default() Principal { return Principal{id: i.def, def: i.def} }

// Key is the key of a remembered answer: k, as asked by one identity.
// Built only by KeyOf, it always holds the identity, so that no cache of
// answers (decisions, 404s, calls in flight, verdicts) can forget it.
type Key[K comparable] struct {
	id string
	k  K
}

// KeyOf returns the key of k for identity who.
func KeyOf[K comparable](who Principal, k K) Key[K] {
	return Key[K]{id: who.id, k: k}
}

// Of returns what the key names, without the identity.
func (k Key[K]) Of() K { return k.k }
