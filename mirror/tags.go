package mirror

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// maxListBody caps a tag list or referrers body relayed from an upstream.
const maxListBody = 16 << 20

// serveTags passes GET /v2/<name>/tags/list through to the upstream, with
// its n and last pagination and a Link header rewritten to this mirror.
func (m *Mirror) serveTags(w http.ResponseWriter, r *http.Request, t target) error {
	markSource(w, sourceUpstream) // lists always come from the upstream
	q := url.Values{}
	for _, k := range []string{"n", "last"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	if n := q.Get("n"); n != "" {
		if v, err := strconv.Atoi(n); err != nil || v < 0 {
			return oci.Errorf(http.StatusBadRequest, oci.CodeUnsupported, "n must be a non-negative integer")
		}
	}
	resp, err := m.tagList(r.Context(), t, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if link := resp.Header.Get("Link"); link != "" {
		w.Header().Set("Link", rewriteLink(link, t.clientName, "tags/list", r.URL.Query().Get("ns")))
	}
	return relayJSON(w, r, resp, func(body []byte) []byte { return m.filterTags(t, body) })
}

// tagList asks the upstream for a page of t's tag list (q has its n and
// last). The caller closes the answer's body, which holds an upstream
// slot.
func (m *Mirror) tagList(ctx context.Context, t target, q url.Values) (*http.Response, error) {
	resp, err := m.upstreamDo(ctx, t, upstream.Request{
		// Always a GET: a HEAD would tell the client no length.
		Method: http.MethodGet, Repository: t.repo, Path: "tags/list", Query: q,
		Header: http.Header{"Accept": {"application/json"}},
	})
	if err != nil {
		return nil, fmt.Errorf("listing tags of %s: %w", t.repo, err)
	}
	return resp, nil
}

// readList reads an upstream JSON list answer whole, refusing bodies
// larger than maxListBody, and closes it.
func readList(resp *http.Response) ([]byte, error) {
	if resp.ContentLength > maxListBody {
		_ = resp.Body.Close()
		return nil, badUpstream("list of %d bytes is larger than the %d allowed", resp.ContentLength, maxListBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListBody+1))
	// Closed before a slow client is written to: the body holds an
	// upstream slot.
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading upstream list: %w", err)
	}
	if len(body) > maxListBody {
		return nil, badUpstream("list is larger than the %d bytes allowed", maxListBody)
	}
	return body, nil
}

// relayJSON copies an upstream JSON answer (status, type, length, body)
// to the client, refusing bodies larger than maxListBody. transform, when
// set, rewrites the body of a 200 answer.
func relayJSON(w http.ResponseWriter, r *http.Request, resp *http.Response, transform func([]byte) []byte) error {
	body, err := readList(resp)
	if err != nil {
		return err
	}
	if transform != nil && resp.StatusCode == http.StatusOK {
		body = transform(body)
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// rewriteLink points a pagination Link header (RFC 5988, as registries send
// it: `</v2/<repo>/tags/list?last=x&n=y>; rel="next"`) at this mirror's
// path for the repository as the client named it, keeping the query (and
// the client's ns parameter).
func rewriteLink(link, clientName, endpoint, ns string) string {
	start, end := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
	if start < 0 || end < start {
		return ""
	}
	u, err := url.Parse(link[start+1 : end])
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Del("ns")
	if ns != "" {
		q.Set("ns", ns)
	}
	next := "/v2/" + clientName + "/" + endpoint
	if enc := q.Encode(); enc != "" {
		next += "?" + enc
	}
	return "<" + next + ">" + link[end+1:]
}
