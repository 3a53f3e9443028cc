// Command testreport reads `go test -json` from stdin, prints what plain
// `go test` prints (a line per package, the output of failed tests), and
// ends with the tests that skipped and why, grouped by reason: the reasons
// name what to install (a client, a server, root). ./test.sh runs it.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

func main() {
	failed, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// report turns the event stream from r into the report on w, and says
// whether anything failed.
func report(r io.Reader, w io.Writer) (failed bool, err error) {
	type key struct{ pkg, test string }
	output := map[key][]string{}
	skips := map[string][]string{} // reason -> tests
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not JSON: a build error printed by go test itself.
			fmt.Fprintln(w, sc.Text())
			failed = true
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			output[k] = append(output[k], e.Output)
		case "skip":
			if e.Test == "" {
				fmt.Fprintf(w, "?   \t%s\t[no test files]\n", e.Package)
				break
			}
			reason := skipReason(output[k])
			skips[reason] = append(skips[reason], e.Package+" "+e.Test)
		case "fail":
			failed = true
			if e.Test != "" {
				fmt.Fprint(w, strings.Join(output[k], ""))
				break
			}
			fmt.Fprint(w, strings.Join(output[k], ""))
			fmt.Fprintf(w, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
		case "pass":
			if e.Test == "" {
				fmt.Fprintf(w, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
		}
		if e.Action == "pass" || e.Action == "fail" || e.Action == "skip" {
			delete(output, k)
		}
	}
	if err := sc.Err(); err != nil {
		return failed, err
	}
	if len(skips) == 0 {
		fmt.Fprintln(w, "\nno test skipped")
		return failed, nil
	}
	n := 0
	reasons := make([]string, 0, len(skips))
	for r, tests := range skips {
		reasons = append(reasons, r)
		n += len(tests)
	}
	slices.Sort(reasons)
	fmt.Fprintf(w, "\n%d tests skipped:\n", n)
	for _, r := range reasons {
		fmt.Fprintf(w, "  %s\n", r)
		for _, t := range skips[r] {
			fmt.Fprintf(w, "      %s\n", t)
		}
	}
	return failed, nil
}

// skipReason is the message a test gave to t.Skip, from its output.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "--- SKIP") || l == "" {
			continue
		}
		// "file_test.go:12: reason"
		if _, after, ok := strings.Cut(l, ".go:"); ok {
			if _, msg, ok := strings.Cut(after, ": "); ok {
				return msg
			}
		}
		return l
	}
	return "(no reason given)"
}
