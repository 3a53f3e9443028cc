package cache

import (
	"context"
	"fmt"
	"os"

	"github.com/opencontainers/go-digest"
)

// SourceProvider opens the bodies of fills in place of their fetch: a
// tier that the stores of several nodes share, such as an object store
// bucket, streams the shared copy of d when there is one; else the fill of
// d that another node runs, as it lands; else fetch's body, published to
// the other nodes as it arrives. While it cannot serve it returns fetch's
// body as it is. A Done callback in the Source receives the fill's
// verdict. Implementations are safe for concurrent use.
type SourceProvider interface {
	// Source opens the content of d for a local fill from its first byte.
	Source(ctx context.Context, d digest.Digest, fetch FetchFunc) (Source, error)
}

// source opens the body of a fill: through the store's SourceProvider
// when it has one, else straight from fetch.
func (s *Store) source(d digest.Digest, fetch FetchFunc) (Source, error) {
	if s.sources == nil {
		return fetch(s.ctx, 0)
	}
	return s.sources.Source(s.ctx, d, fetch)
}

// finishSource hands a fill's verdict to its source's Done callback, with
// the verified content: the stored file, or the download when it could
// not be stored. It runs before the download is removed.
func (s *Store) finishSource(fl *fill, stored bool, err error) {
	if fl.onDone == nil {
		return
	}
	if err != nil {
		fl.onDone(nil, Object{}, err)
		return
	}
	path := fl.tmpPath
	if stored {
		path, _ = s.blobPath(fl.d) // d is valid
	}
	f, oerr := os.Open(path)
	if oerr != nil {
		fl.onDone(nil, Object{}, fmt.Errorf("opening the verified content of %s: %w", fl.d, oerr))
		return
	}
	defer f.Close()
	written, _, _, _ := fl.state()
	fl.onDone(f, Object{Digest: fl.d, Size: written, MediaType: fl.mediaType}, nil)
}
