package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// ociErrorBody is the OCI error body.
type ociErrorBody struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

func TestErrorsAreOCIJSON(t *testing.T) {
	_, manifest, err := hub.PushImage("library/errs", "ok", 1, 1024, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	missing := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name, method, path string
		status             int
		code               string
		upstreamAllowed    bool
	}{
		{"put manifest", http.MethodPut, "/v2/errs/manifests/ok", 405, "UNSUPPORTED", false},
		{"start upload", http.MethodPost, "/v2/errs/blobs/uploads/", 405, "UNSUPPORTED", false},
		{"patch upload", http.MethodPatch, "/v2/errs/blobs/uploads/abc", 405, "UNSUPPORTED", false},
		{"delete manifest", http.MethodDelete, "/v2/errs/manifests/" + manifest, 405, "UNSUPPORTED", false},
		{"uppercase name", http.MethodGet, "/v2/Errs/manifests/ok", 400, "NAME_INVALID", false},
		{"empty component", http.MethodGet, "/v2/a//b/manifests/ok", 400, "NAME_INVALID", false},
		{"dot-dot component", http.MethodGet, "/v2/a/../b/manifests/ok", 400, "NAME_INVALID", false},
		{"encoded dot-dot", http.MethodGet, "/v2/a/%2e%2e/b/manifests/ok", 400, "NAME_INVALID", false},
		{"encoded slash", http.MethodGet, "/v2/a%2fb/manifests/ok", 400, "NAME_INVALID", false},
		{"short digest", http.MethodGet, "/v2/errs/blobs/sha256:abc", 400, "DIGEST_INVALID", false},
		{"unknown algorithm", http.MethodGet, "/v2/errs/blobs/md5:" + strings.Repeat("a", 32), 400, "DIGEST_INVALID", false},
		{"bad tag", http.MethodGet, "/v2/errs/manifests/-bad", 400, "TAG_INVALID", false},
		{"unconfigured ns", http.MethodGet, "/v2/x/manifests/ok?ns=evil.example", 404, "NAME_UNKNOWN", false},
		{"unconfigured path prefix", http.MethodGet, "/v2/evil.example/x/manifests/ok", 404, "NAME_UNKNOWN", false},
		{"oversize name", http.MethodGet, "/v2/" + strings.Repeat("abcdefgh/", 30) + "x/manifests/ok", 400, "NAME_INVALID", false},
		{"CR LF in a tag", http.MethodGet, "/v2/errs/manifests/ok%0d%0aX-Injected:%201", 400, "NAME_INVALID", false},
		{"NUL in a name", http.MethodGet, "/v2/errs%00/manifests/ok", 400, "NAME_INVALID", false},
		{"truncated sha512", http.MethodGet, "/v2/errs/blobs/sha512:" + strings.Repeat("a", 127), 400, "DIGEST_INVALID", false},
		{"uppercase digest", http.MethodGet, "/v2/errs/blobs/sha256:" + strings.Repeat("AB", 32), 400, "DIGEST_INVALID", false},
		{"traversal in a digest", http.MethodGet, "/v2/errs/blobs/sha256:..%2f..%2fmeta.db", 400, "NAME_INVALID", false},
		{"unknown tag", http.MethodGet, "/v2/errs/manifests/nope", 404, "MANIFEST_UNKNOWN", true},
		{"unknown blob", http.MethodGet, "/v2/errs/blobs/" + missing, 404, "BLOB_UNKNOWN", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hub.Counters.Reset()
			before := cacheFiles(t, m.Storage)
			resp := m.do(t, tc.method, tc.path)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if v := resp.Header.Get("Docker-Distribution-API-Version"); v != "registry/2.0" {
				t.Errorf("Docker-Distribution-API-Version %q", v)
			}
			var e ociErrorBody
			if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
				t.Fatalf("body is not an OCI error: %s (%v)", body, err)
			}
			if e.Errors[0].Code != tc.code {
				t.Errorf("code %s, want %s (%s)", e.Errors[0].Code, tc.code, e.Errors[0].Message)
			}
			if !tc.upstreamAllowed {
				wantCount(t, "upstream requests", hub.Counters.Upstream(), 0)
				if after := cacheFiles(t, m.Storage); after != before {
					t.Errorf("the cache changed: %s, before %s", after, before)
				}
			}
		})
	}
}

// cacheFiles lists the content files of a cache (blobs/ and ingest/), as
// one string to compare.
func cacheFiles(t *testing.T, storage string) string {
	t.Helper()
	var names []string
	for _, sub := range []string{"blobs", "ingest"} {
		err := filepath.WalkDir(filepath.Join(storage, sub), func(path string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				names = append(names, path)
			}
			return err
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return fmt.Sprint(names)
}

// TestBaseEndpoint checks the API root: a client without a token is
// pointed at the mirror's token endpoint (a Bearer challenge, as Docker
// Hub does), an anonymous token opens it, an unknown token is refused
// with invalid_token, and with client_login off it is open to all.
func TestBaseEndpoint(t *testing.T) {
	m := startMirror(t, siteOptions{})
	hub.Counters.Reset()
	resp := m.do(t, http.MethodGet, "/v2/_token?service=x&scope=repository:library/alpine:pull")
	var answer struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	err := json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || len(answer.Token) < 32 || answer.ExpiresIn <= 0 {
		t.Fatalf("anonymous token: status %d, %+v, %v", resp.StatusCode, answer, err)
	}
	for _, tc := range []struct {
		name, auth string
		status     int
		challenge  string
	}{
		{"no token", "", http.StatusUnauthorized, `Bearer realm="` + m.URL + `/v2/_token",service="` + m.Host + `"`},
		{"anonymous token", "Authorization: Bearer " + answer.Token, http.StatusOK, ""},
		{"unknown token", "Authorization: Bearer 0123456789abcdef0123456789abcdef", http.StatusUnauthorized, `error="invalid_token"`},
		{"unsupported scheme", "Authorization: Digest x", http.StatusBadRequest, ""},
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			var headers []string
			if tc.auth != "" {
				headers = append(headers, tc.auth)
			}
			resp := m.do(t, method, "/v2/", headers...)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
				t.Errorf("%s, %s /v2/: status %d, version %q; want %d", tc.name, method, resp.StatusCode, resp.Header.Get("Docker-Distribution-API-Version"), tc.status)
			}
			if ch := resp.Header.Get("Www-Authenticate"); !strings.Contains(ch, tc.challenge) || (tc.challenge == "") != (ch == "") {
				t.Errorf("%s, %s /v2/: WWW-Authenticate %q, want %q", tc.name, method, ch, tc.challenge)
			}
		}
	}
	// Other paths belong to the rest of the site.
	resp = m.do(t, http.MethodGet, "/healthz")
	resp.Body.Close()
	if resp.Header.Get("Docker-Distribution-API-Version") != "" {
		t.Errorf("a non-registry path was answered by the registry handler")
	}
	wantCount(t, "upstream requests", hub.Counters.Upstream(), 0)
	open := startMirror(t, siteOptions{block: "client_login off"})
	resp = open.do(t, http.MethodGet, "/v2/")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Www-Authenticate") != "" {
		t.Errorf("client_login off: /v2/ status %d, challenge %q; want 200 and none", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
	if resp := open.do(t, http.MethodGet, "/v2/_token"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("client_login off: token endpoint status %d, want 404", resp.StatusCode)
	}
}

func TestManifestHeadersAndConditional(t *testing.T) {
	_, want, err := hub.PushImage("library/heads", "1", 1, 1024, true)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	accept := "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
	get := m.do(t, http.MethodGet, "/v2/heads/manifests/1", accept)
	body, _ := io.ReadAll(get.Body)
	get.Body.Close()
	head := m.do(t, http.MethodHead, "/v2/heads/manifests/1", accept)
	head.Body.Close()
	for _, resp := range []*http.Response{get, head} {
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", resp.Request.Method, resp.StatusCode)
		}
		if d := resp.Header.Get("Docker-Content-Digest"); d != want {
			t.Errorf("%s: Docker-Content-Digest %s, want %s", resp.Request.Method, d, want)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.oci.image.manifest.v1+json" {
			t.Errorf("%s: Content-Type %q", resp.Request.Method, ct)
		}
		if cl := resp.Header.Get("Content-Length"); cl != fmt.Sprint(len(body)) {
			t.Errorf("%s: Content-Length %s, want %d", resp.Request.Method, cl, len(body))
		}
	}
	cond := m.do(t, http.MethodGet, "/v2/heads/manifests/"+want, `If-None-Match: "`+want+`"`)
	cond.Body.Close()
	if cond.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with the digest: status %d, want 304", cond.StatusCode)
	}
}

func TestTagListPagination(t *testing.T) {
	want := []string{"a", "b", "c", "d", "e"}
	for _, tag := range want {
		if _, _, err := hub.PushImage("org/paged", tag, 1, 512, false); err != nil {
			t.Fatal(err)
		}
	}
	m := startMirror(t, siteOptions{})
	got := listPages(t, m, "/v2/org/paged/tags/list?n=2", "tags", 2)
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("tags %v, want %v", got, want)
	}
}

// TestCatalogListsCachedRepositories: the catalog lists the repositories
// the mirror holds tags of, named as clients reach them through it, in
// order and paginated.
func TestCatalogListsCachedRepositories(t *testing.T) {
	for _, repo := range []string{"library/cat-b", "org/cat-a", "owner/cat-c"} {
		if _, _, err := hub.PushImage(repo, "1", 1, 512, false); err != nil {
			t.Fatal(err)
		}
	}
	m := startMirror(t, siteOptions{upstreams: fmt.Sprintf("upstream docker.io %s\n\t\tupstream ghcr.io %s", hub.URL, hub.URL)})
	if got := listPages(t, m, "/v2/_catalog", "repositories", 1000); len(got) != 0 {
		t.Errorf("empty cache: catalog %v, want none", got)
	}
	for _, ref := range []string{"cat-b:1", "org/cat-a:1", "ghcr.io/owner/cat-c:1"} {
		pullImage(t, m.Host+"/"+ref)
	}
	want := []string{"ghcr.io/owner/cat-c", "library/cat-b", "org/cat-a"}
	for _, first := range []string{"/v2/_catalog", "/v2/_catalog?n=2", "/v2/_catalog?n=1"} {
		got := listPages(t, m, first, "repositories", 1000)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: catalog %v, want %v", first, got, want)
		}
	}
	if got := listPages(t, m, "/v2/_catalog?last=library/cat-b", "repositories", 1000); strings.Join(got, ",") != "org/cat-a" {
		t.Errorf("catalog after library/cat-b: %v, want [org/cat-a]", got)
	}
	resp := m.do(t, http.MethodGet, "/v2/_catalog?n=-1")
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("n=-1: status %d, want 400", resp.StatusCode)
	}
}

// listPages follows a paginated list (tags or catalog) from its first
// page through its Link headers and returns the entries under key. No page
// may hold more than max entries.
func listPages(t *testing.T, m *mirrorSite, first, key string, max int) []string {
	t.Helper()
	var got []string
	next := first
	path, _, _ := strings.Cut(first, "?")
	for pages := 0; next != ""; pages++ {
		if pages > 10 {
			t.Fatalf("pagination does not end; entries so far %v", got)
		}
		resp := m.do(t, http.MethodGet, next)
		var list map[string]json.RawMessage
		err := json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", next, resp.StatusCode, err)
		}
		var entries []string
		if err := json.Unmarshal(list[key], &entries); err != nil {
			t.Fatalf("GET %s: %q is not a list of strings: %v", next, key, err)
		}
		if len(entries) > max {
			t.Errorf("page of %d entries, want at most %d", len(entries), max)
		}
		got = append(got, entries...)
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			start, end := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
			if start < 0 || end < start {
				t.Fatalf("malformed Link %q", link)
			}
			next = link[start+1 : end]
			if !strings.HasPrefix(next, path+"?") {
				t.Fatalf("Link %q does not point at the mirror's %s", link, path)
			}
		}
	}
	return got
}
