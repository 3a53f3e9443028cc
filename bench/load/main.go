// Command load runs N concurrent GETs of one blob, each on its own
// connection, and prints one JSON line: the wall time, every client's
// first byte (Unix nanoseconds), the bytes received and whether every
// client got the whole blob with the right digest.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// result is one client's download.
type result struct {
	FirstByte int64  `json:"first_byte"` // Unix nanoseconds
	End       int64  `json:"end"`        // Unix nanoseconds
	Bytes     int64  `json:"bytes"`
	Proto     string `json:"proto"`
	Err       string `json:"err,omitempty"`
}

// summary is the JSON line printed.
type summary struct {
	Clients      int      `json:"clients"`
	OK           int      `json:"ok"`
	Start        int64    `json:"start"` // Unix nanoseconds
	WallSeconds  float64  `json:"wall_s"`
	MBPerSecond  float64  `json:"mb_s"` // bytes of every client per wall second, in MB (10^6)
	FirstByteMin int64    `json:"first_byte_min"`
	FirstByteMax int64    `json:"first_byte_max"`
	Bytes        int64    `json:"bytes"`
	Proto        string   `json:"proto"`
	Errors       []string `json:"errors,omitempty"`
}

func main() {
	target := flag.String("url", "", "blob URL")
	n := flag.Int("n", 1, "concurrent clients")
	token := flag.String("token", "", "bearer token (not sent across a redirect to another host)")
	want := flag.String("digest", "", "sha256:<hex> every body must hash to; empty: no hashing, the size is checked")
	size := flag.Int64("size", -1, "expected body size; -1: any")
	h2 := flag.Bool("h2", false, "use HTTP/2 over TLS (HTTP/1.1 otherwise)")
	flag.Parse()
	if *target == "" {
		log.Fatal("load: -url is required")
	}
	s := run(*target, *n, *token, *want, *size, *h2)
	if err := json.NewEncoder(os.Stdout).Encode(s); err != nil {
		log.Fatal(err)
	}
	if s.OK != s.Clients {
		os.Exit(1)
	}
}

func run(target string, n int, token, want string, size int64, h2 bool) summary {
	results := make([]result, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = fetch(target, token, want, size, h2)
		}()
	}
	wg.Wait()
	end := time.Now()
	s := summary{Clients: n, Start: start.UnixNano(), WallSeconds: end.Sub(start).Seconds()}
	for _, r := range results {
		s.Bytes += r.Bytes
		if r.Err != "" {
			s.Errors = append(s.Errors, r.Err)
			continue
		}
		s.OK++
		s.Proto = r.Proto
		if s.FirstByteMin == 0 || r.FirstByte < s.FirstByteMin {
			s.FirstByteMin = r.FirstByte
		}
		s.FirstByteMax = max(s.FirstByteMax, r.FirstByte)
	}
	s.MBPerSecond = float64(s.Bytes) / 1e6 / s.WallSeconds
	slices.Sort(s.Errors)
	s.Errors = slices.Compact(s.Errors)
	return s
}

// fetch downloads the blob once on a connection of its own.
func fetch(target, token, want string, size int64, h2 bool) result {
	tr := &http.Transport{
		DisableCompression: true,
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, // loopback, tls internal
		ReadBufferSize:     256 << 10,
	}
	if h2 {
		tr.ForceAttemptHTTP2 = true
	} else {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return result{Err: err.Error()}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{Err: err.Error()}
	}
	defer resp.Body.Close()
	r := result{Proto: resp.Proto}
	if resp.StatusCode != http.StatusOK {
		r.Err = "status " + resp.Status
		return r
	}
	var h hash.Hash
	if want != "" {
		h = sha256.New()
	}
	buf := make([]byte, 1<<20)
	for {
		m, rerr := resp.Body.Read(buf)
		if m > 0 {
			if r.FirstByte == 0 {
				r.FirstByte = time.Now().UnixNano()
			}
			r.Bytes += int64(m)
			if h != nil {
				h.Write(buf[:m])
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			r.Err = "reading the body: " + rerr.Error()
			return r
		}
	}
	r.End = time.Now().UnixNano()
	switch {
	case size >= 0 && r.Bytes != size:
		r.Err = fmt.Sprintf("got %d bytes, want %d", r.Bytes, size)
	case h != nil && "sha256:"+hex.EncodeToString(h.Sum(nil)) != want:
		r.Err = "digest mismatch"
	case h == nil && want == "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/"):
		// Every server here labels a blob application/octet-stream.
		r.Err = "unexpected Content-Type " + resp.Header.Get("Content-Type")
	}
	return r
}
