package mirror

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
)

// maxCatalogPage caps the repositories of one catalog page; a larger n is
// lowered to it and the rest is reached through the Link header.
const maxCatalogPage = 1000

// serveCatalog answers GET /v2/_catalog with the repositories this mirror
// holds tags of, named as a client reaches them here: bare for the default
// upstream, prefixed with the registry's name for the others. An upstream's
// own catalog is not consulted: public registries do not offer one. The
// list is sorted and paginated with n and last, with a Link header to the
// next page when there is one.
func (m *Mirror) serveCatalog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n := -1
	if v := q.Get("n"); v != "" {
		parsed, err := strconv.Atoi(v)
		if err != nil || parsed < 0 {
			m.writeError(w, r, oci.Errorf(http.StatusBadRequest, oci.CodeUnsupported, "n must be a non-negative integer"))
			return
		}
		n = parsed
	}
	if n < 0 || n > maxCatalogPage {
		n = maxCatalogPage
	}
	last := q.Get("last")
	names, err := m.cachedRepositories()
	if err != nil {
		m.writeError(w, r, fmt.Errorf("listing cached repositories: %w", err))
		return
	}
	start, _ := slices.BinarySearch(names, last)
	if start < len(names) && last != "" && names[start] == last {
		start++
	}
	page := names[start:min(start+n, len(names))]
	if start+n < len(names) && len(page) > 0 {
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {page[len(page)-1]}}
		w.Header().Set("Link", "</v2/_catalog?"+next.Encode()+`>; rel="next"`)
	}
	body, err := json.Marshal(struct {
		Repositories []string `json:"repositories"`
	}{Repositories: append([]string{}, page...)})
	if err != nil {
		m.writeError(w, r, fmt.Errorf("encoding the catalog: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// cachedRepositories returns the sorted, distinct names of the
// repositories with cached tags, as clients of this mirror name them.
// Upstreams no longer configured are left out, and so are repositories
// that the upstream did not let the mirror's default identity pull: the
// name of a private repository is not shown to anyone who asks. The edge
// policy's allow and deny rules hide the repositories they refuse.
func (m *Mirror) cachedRepositories() ([]string, error) {
	type repoKey struct{ registry, repo string }
	seen := map[repoKey]bool{}
	err := m.records.EachTag(func(registry, repo, _ string, _ cache.Tag) bool {
		if _, ok := m.upstreams[registry]; ok {
			seen[repoKey{registry, repo}] = true
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(seen))
	for k := range seen {
		def := m.upstreams[k.registry].DefaultCredentialID()
		if !m.decisions.Listed(access.NewPrincipal(def, def), k.registry, k.repo) || !m.allowedInCatalog(k.registry, k.repo) {
			continue
		}
		name := k.repo
		if k.registry != m.defaultName {
			name = k.registry + "/" + k.repo
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}
