package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestReloadSaysWhatItCannotApply reloads the in-process Caddy with
// settings that the open cache keeps (memory, max_downloads) and one it
// applies live (max_size): each kept setting is logged at Warn once, with
// its running and new value, and the live one not at all. A reload that
// changes nothing logs nothing.
func TestReloadSaysWhatItCannotApply(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "caddy.log")
	port := freePort(t)
	config := func(block string) string {
		return fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
	storage file_system %s
	log {
		output file %s
		format json
		level WARN
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	registry_cache {
		storage %s
		upstream docker.io %s
%s
	}
}
`, filepath.Join(dir, "caddy-data"), logFile, port, filepath.Join(dir, "cache"), hub.URL, blockLines(block))
	}
	loadCaddyfile(t, config("max_size 1GiB"))
	wantKeptWarnings(t, "first load", logFile, nil)
	loadCaddyfile(t, config("max_size 2GiB\n\t\tmemory 128MiB\n\t\tmax_downloads 8"))
	wantKeptWarnings(t, "reload", logFile, map[string][2]string{
		"memory":        {"67108864", "134217728"},
		"max_downloads": {"64", "8"},
	})
	// The same config again: the cache still runs with the first values,
	// and this reload says so too.
	loadCaddyfile(t, config("max_size 2GiB\n\t\tmemory 128MiB\n\t\tmax_downloads 8"))
	wantKeptWarnings(t, "second reload", logFile, map[string][2]string{
		"memory":        {"67108864", "134217728"},
		"max_downloads": {"64", "8"},
	})
	loadCaddyfile(t, config("max_size 3GiB"))
	wantKeptWarnings(t, "reload back to the running values", logFile, nil)
}

// wantKeptWarnings reads the log lines written since the last call
// (truncating the file) and checks the warnings about kept settings:
// exactly one per setting in want, with its running and new value.
func wantKeptWarnings(t *testing.T, step, logFile string, want map[string][2]string) {
	t.Helper()
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][][2]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Level, Msg, Setting, Running, New, Storage string
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: log line %q: %v", step, sc.Text(), err)
		}
		if line.Setting != "" {
			if line.Level != "warn" {
				t.Errorf("%s: %s logged at %s, want warn", step, line.Setting, line.Level)
			}
			got[line.Setting] = append(got[line.Setting], [2]string{line.Running, line.New})
		}
	}
	f.Close()
	if err := os.Truncate(logFile, 0); err != nil {
		t.Fatal(err)
	}
	for setting, values := range got {
		w, ok := want[setting]
		if !ok || len(values) != 1 || values[0] != w {
			t.Errorf("%s: warnings about %s: %v, want %v", step, setting, values, w)
		}
	}
	for setting, w := range want {
		if _, ok := got[setting]; !ok {
			t.Errorf("%s: no warning about %s (running %s, new %s)", step, setting, w[0], w[1])
		}
	}
}
