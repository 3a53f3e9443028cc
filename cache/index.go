package cache

import (
	"fmt"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/opencontainers/go-digest"
)

// entry is a hot index value. It carries its own identity because the
// index's eviction callback only sees a hash, and a lookup checks it.
type entry struct {
	obj  Object
	data []byte // the content, for objects up to the inline limit
}

// entryOverhead is the index cost of an entry besides its inline bytes.
const entryOverhead = 256

// newIndex builds the hot index with a budget of maxCost bytes.
func newIndex(maxCost int64) (*ristretto.Cache[string, *entry], error) {
	// Ten counters per expected entry; entries of a few KiB are typical.
	counters := max(maxCost/1024*10, 100_000)
	c, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters:        counters,
		MaxCost:            maxCost,
		BufferItems:        64,
		IgnoreInternalCost: true, // entryOverhead accounts for it
	})
	if err != nil {
		return nil, fmt.Errorf("creating hot index: %w", err)
	}
	return c, nil
}

// lookup returns d's entry in the hot index. A miss means nothing: the
// index drops entries and sets, and the disk has the answer.
func (s *Store) lookup(d digest.Digest) (*entry, bool) {
	e, ok := s.index.Get(string(d))
	if !ok || e.obj.Digest != d {
		return nil, false
	}
	return e, true
}

// setIndex records a verified object in the hot index, with its bytes when
// they fit the inline limit.
func (s *Store) setIndex(obj Object, data []byte) {
	e := &entry{obj: obj}
	cost := int64(entryOverhead)
	if data != nil && int64(len(data)) <= s.inlineLimit {
		e.data = data
		cost += int64(len(data))
	}
	s.index.Set(string(obj.Digest), e, cost)
}
