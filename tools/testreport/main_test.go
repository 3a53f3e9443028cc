package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	stream := strings.Join([]string{
		`{"Action":"run","Package":"p/a","Test":"TestOK"}`,
		`{"Action":"pass","Package":"p/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"p/a","Test":"TestCrane","Output":"=== RUN   TestCrane\n"}`,
		`{"Action":"output","Package":"p/a","Test":"TestCrane","Output":"    cli_test.go:37: crane is not installed (go install …/crane@v0.22.1)\n"}`,
		`{"Action":"output","Package":"p/a","Test":"TestCrane","Output":"--- SKIP: TestCrane (0.00s)\n"}`,
		`{"Action":"skip","Package":"p/a","Test":"TestCrane"}`,
		`{"Action":"output","Package":"p/a","Test":"TestRoot","Output":"    daemon_test.go:9: dockerd needs root\n"}`,
		`{"Action":"skip","Package":"p/a","Test":"TestRoot"}`,
		`{"Action":"pass","Package":"p/a","Elapsed":1.5}`,
		`{"Action":"output","Package":"p/b","Test":"TestBad","Output":"    b_test.go:3: got 1, want 2\n"}`,
		`{"Action":"fail","Package":"p/b","Test":"TestBad"}`,
		`{"Action":"fail","Package":"p/b","Elapsed":0.1}`,
		`{"Action":"skip","Package":"p/c"}`,
	}, "\n")
	var out strings.Builder
	failed, err := report(strings.NewReader(stream), &out)
	if err != nil || !failed {
		t.Fatalf("report() = %v, %v; want a failure", failed, err)
	}
	for _, want := range []string{
		"ok  \tp/a\t1.500s",
		"got 1, want 2",
		"FAIL\tp/b",
		"?   \tp/c\t[no test files]",
		"2 tests skipped:",
		"  crane is not installed (go install …/crane@v0.22.1)\n      p/a TestCrane",
		"  dockerd needs root\n      p/a TestRoot",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSkipReason(t *testing.T) {
	tests := []struct {
		lines []string
		want  string
	}{
		{[]string{"=== RUN   TestX\n", "    x_test.go:5: podman is not installed\n", "--- SKIP: TestX (0.00s)\n"}, "podman is not installed"},
		{[]string{"--- SKIP: TestX (0.00s)\n"}, "(no reason given)"},
		{[]string{"plain line\n"}, "plain line"},
	}
	for _, tc := range tests {
		if got := skipReason(tc.lines); got != tc.want {
			t.Errorf("skipReason(%q) = %q, want %q", tc.lines, got, tc.want)
		}
	}
}
