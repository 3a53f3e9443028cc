package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The ingest area holds the downloads in progress and the partial
// downloads a fill left when it gave up (or the store closed), so that the
// next fill of the digest continues where it stopped. Each download is a
// data file named after its digest and, once its size is known, a small
// sidecar describing it; the bytes of the data file are the content's
// first bytes, which the next fill hashes again before it continues.

// partialPrefix starts the names of the downloads' files in ingest/.
const partialPrefix = "partial-"

// sidecarSuffix ends the name of a download's sidecar.
const sidecarSuffix = ".json"

// partialMeta is the sidecar of a partial download.
type partialMeta struct {
	// Digest is the content's digest.
	Digest digest.Digest `json:"digest"`
	// Size is the content's size, -1 when unknown.
	Size int64 `json:"size"`
	// MediaType is the content's media type.
	MediaType string `json:"media_type,omitempty"`
	// Offset is how many of the content's first bytes the data file held
	// when the sidecar was written.
	Offset int64 `json:"offset"`
	// Segmented is set while a fill fetches the content in several
	// ranges: the data file may then hold bytes of later ranges, and only
	// its first Offset bytes are a prefix of the content.
	Segmented bool `json:"segmented,omitempty"`
	// Extents are the ranges beyond Offset that the data file held, each
	// written in full before the sidecar recorded it, in order and apart:
	// a later fill hashes them from the file as its prefix reaches them
	// and fetches only the gaps.
	Extents []extent `json:"extents,omitempty"`
	// Updated is when the sidecar was written.
	Updated time.Time `json:"updated"`
}

// extent is a range of a download's bytes, First to End (excluded).
type extent struct {
	First int64 `json:"first"`
	End   int64 `json:"end"`
}

// trimExtents returns the extents of list that lie beyond the prefix
// (the part of one it overlaps cut off) and within the first limit bytes,
// in order and merged where they touch; extents out of order are dropped.
func trimExtents(list []extent, prefix, limit int64) []extent {
	var out []extent
	last := prefix
	for _, e := range list {
		e.First, e.End = max(e.First, prefix), min(e.End, limit)
		if e.End <= e.First || e.First < last {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End == e.First {
			out[n-1].End = e.End
		} else {
			out = append(out, e)
		}
		last = e.End
	}
	return out
}

// partialPath is the data file of d's download in ingest/.
func (s *Store) partialPath(d digest.Digest) string {
	return filepath.Join(s.ingestDir, partialPrefix+string(d.Algorithm())+"-"+d.Encoded())
}

// writeSidecar records a partial download next to its data file,
// atomically (written aside, then renamed).
func writeSidecar(dataPath string, m partialMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := dataPath + sidecarSuffix + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dataPath+sidecarSuffix)
}

// readSidecar reads the sidecar of the data file at dataPath.
func readSidecar(dataPath string) (partialMeta, error) {
	b, err := os.ReadFile(dataPath + sidecarSuffix)
	if err != nil {
		return partialMeta{}, err
	}
	var m partialMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return partialMeta{}, fmt.Errorf("reading %s: %w", dataPath+sidecarSuffix, err)
	}
	return m, nil
}

// removePartial removes a download's data file and sidecar.
func removePartial(dataPath string) {
	_ = os.Remove(dataPath + sidecarSuffix)
	_ = os.Remove(dataPath)
}

// openPartial opens the data file of d's download for a new fill: the
// partial download a previous fill left, when its sidecar describes d and
// the file is not longer than the content, else an empty file. It returns
// the file, how many first bytes of the content it holds, and the
// sidecar's size and media type (-1 and "" for an empty file). Through a
// SourceProvider, which continues downloads across nodes itself, every
// fill starts from the first byte.
func (s *Store) openPartial(d digest.Digest) (*os.File, int64, partialMeta, error) {
	path := s.partialPath(d)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, 0, partialMeta{}, err
	}
	fresh := partialMeta{Digest: d, Size: -1}
	m, merr := readSidecar(path)
	fi, serr := f.Stat()
	if s.keepPartials && merr == nil && serr == nil && m.Digest == d &&
		fi.Size() > 0 && (m.Size < 0 || fi.Size() <= m.Size) {
		// The data file may hold more than the sidecar's offset (a crash
		// before the sidecar was rewritten): the bytes are verified with
		// the rest at the end, and a mismatch starts over. A download in
		// ranges holds a whole prefix only up to the offset, and beyond
		// it only the extents recorded.
		n := fi.Size()
		if m.Segmented {
			n = min(n, m.Offset)
			m.Extents = trimExtents(m.Extents, n, fi.Size())
			end := n
			if k := len(m.Extents); k > 0 {
				end = m.Extents[k-1].End
			}
			if err := f.Truncate(end); err != nil {
				_ = f.Close()
				return nil, 0, partialMeta{}, err
			}
		} else {
			m.Extents = nil
		}
		if n > 0 || len(m.Extents) > 0 {
			return f, n, m, nil
		}
	}
	_ = os.Remove(path + sidecarSuffix)
	if err := f.Truncate(0); err != nil {
		_ = f.Close()
		return nil, 0, partialMeta{}, err
	}
	return f, 0, fresh, nil
}

// sweepIngest bounds the ingest area: at Open (all set) it removes every
// leftover that is not a resumable partial download; always it removes
// partial downloads older than the age limit, then the oldest ones until
// the rest fit the size limit. Downloads of running fills are kept. Called
// with s.mu held, or before the store serves.
func (s *Store) sweepIngest(all bool) {
	entries, err := os.ReadDir(s.ingestDir)
	if err != nil {
		s.log.Warn("sweeping the ingest area", zap.Error(err))
		return
	}
	type partial struct {
		path    string
		size    int64
		updated time.Time
	}
	var partials []partial
	names := make(map[string]bool, len(entries))
	for _, e := range entries {
		names[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(s.ingestDir, name)
		isData := strings.HasPrefix(name, partialPrefix) && !strings.Contains(name, ".")
		if !isData {
			if all && !(strings.HasSuffix(name, sidecarSuffix) && names[strings.TrimSuffix(name, sidecarSuffix)]) {
				_ = os.RemoveAll(path)
			}
			continue
		}
		m, merr := readSidecar(path)
		if s.activePartial(path) {
			continue
		}
		fi, ierr := e.Info()
		if merr != nil || ierr != nil || fi.Size() == 0 {
			removePartial(path)
			continue
		}
		partials = append(partials, partial{path: path, size: fi.Size(), updated: m.Updated})
	}
	// Newest first: what fits the limits is kept.
	slices.SortFunc(partials, func(a, b partial) int { return b.updated.Compare(a.updated) })
	now := s.now()
	var total int64
	for _, p := range partials {
		if now.Sub(p.updated) > s.ingestMaxAge || total+p.size > s.ingestMaxBytes {
			removePartial(p.path)
			continue
		}
		total += p.size
	}
}

// ingestSweepInterval bounds how often the ingest area is swept besides
// Open and the fills that keep a partial download, so that partial
// downloads past their age go even when nothing else happens.
const ingestSweepInterval = 10 * time.Minute

// sweepIngestLoop sweeps the ingest area every ingestSweepInterval (or
// a quarter of the age limit, when shorter) until the store closes.
func (s *Store) sweepIngestLoop() {
	defer s.wg.Done()
	t := time.NewTicker(min(ingestSweepInterval, max(s.ingestMaxAge/4, time.Second)))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			s.sweepIngest(false)
			s.mu.Unlock()
		}
	}
}

// activePartial reports whether a running fill downloads into path.
// Called with s.mu held (or before the store serves).
func (s *Store) activePartial(path string) bool {
	for _, fl := range s.fills {
		if fl.tmpPath == path {
			return true
		}
	}
	return false
}

// hashPrefix hashes the first n bytes of f into h: the prefix a partial
// download kept, before the fill continues it.
func hashPrefix(f *os.File, n int64, h io.Writer) error {
	return hashRange(f, 0, n, h)
}

// hashRange hashes n bytes of f from off into h.
func hashRange(f *os.File, off, n int64, h io.Writer) error {
	bp := fillBuffers.Get().(*[]byte)
	defer fillBuffers.Put(bp)
	got, err := io.CopyBuffer(h, io.NewSectionReader(f, off, n), *bp)
	if err == nil && got != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && !errors.Is(err, fs.ErrClosed) {
		return fmt.Errorf("hashing %d bytes from byte %d of a partial download: %w", n, off, err)
	}
	return err
}

// recordPartial writes the sidecar of fl's download, so that a later fill
// (after a crash, too) can continue it. segmented tells that the file may
// hold bytes beyond offset that are not part of a whole prefix; extents
// are those of them written in full.
func (s *Store) recordPartial(fl *fill, offset int64, segmented bool, extents []extent) {
	if !s.keepPartials {
		return
	}
	err := writeSidecar(fl.tmpPath, partialMeta{Digest: fl.d, Size: fl.size, MediaType: fl.mediaType,
		Offset: offset, Segmented: segmented, Extents: extents, Updated: s.now()})
	if err != nil {
		if c := s.log.Check(zapcore.DebugLevel, "recording a download"); c != nil {
			c.Write(zap.String("digest", fl.d.String()), zap.Error(err))
		}
	}
}

// keepPartial keeps the download of a fill that ended without storing its
// content, when keep is set and it holds bytes: its data made durable and
// its sidecar rewritten, so that the next fill of the digest continues it.
// Otherwise it removes the sidecar (the data file goes with the fill). It
// reports whether the download was kept.
func (s *Store) keepPartial(fl *fill, tmp *os.File, written int64, keep bool) bool {
	extents := trimExtents(fl.extents, written, max(fl.size, 0))
	if keep && (written > 0 || len(extents) > 0) && s.keepPartials {
		// Bytes of later ranges beyond the prefix go, but for the extents
		// written in full: a later fill fetches only the gaps.
		end := written
		if k := len(extents); k > 0 {
			end = extents[k-1].End
		}
		err := tmp.Truncate(end)
		if err == nil {
			err = tmp.Sync()
		}
		if err == nil {
			err = writeSidecar(fl.tmpPath, partialMeta{Digest: fl.d, Size: fl.size, MediaType: fl.mediaType,
				Offset: written, Segmented: len(extents) > 0, Extents: extents, Updated: s.now()})
			if err == nil {
				return true
			}
		}
	}
	_ = os.Remove(fl.tmpPath + sidecarSuffix)
	return false
}
