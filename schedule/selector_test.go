package schedule

import (
	"slices"
	"testing"
)

func TestSelect(t *testing.T) {
	alpine := []string{"3.18", "3.19", "3.19.1", "3.20", "3.21.0", "edge", "latest", "20240101", "3.20-rc1", "2.7"}
	tests := []struct {
		name        string
		tags        []string
		constraints []string
		newest      int
		want        []string
	}{
		{"everything without a filter", nil, nil, 0,
			[]string{"20240101", "3.21.0", "3.20", "3.20-rc1", "3.19.1", "3.19", "3.18", "2.7", "edge", "latest"}},
		{"globs", []string{"3.*", "latest"}, nil, 0,
			[]string{"3.21.0", "3.20", "3.20-rc1", "3.19.1", "3.19", "3.18", "latest"}},
		{"a regular expression matches the whole tag", []string{`~3\.\d+`}, nil, 0, []string{"3.20", "3.19", "3.18"}},
		{"semver alone: versions only", nil, []string{">=3.19", "<3.21"}, 0, []string{"3.20", "3.19.1", "3.19"}},
		{"semver with a pattern keeps a named non-version", []string{"3.*", "latest"}, []string{">=3.20"}, 0,
			[]string{"3.21.0", "3.20", "latest"}},
		{"newest N of the versions", []string{"3.*", "latest"}, nil, 2, []string{"3.21.0", "3.20", "latest"}},
		{"newest alone", nil, nil, 1, []string{"20240101"}},
		{"semver and newest", nil, []string{"<3.21"}, 3, []string{"3.20", "3.19.1", "3.19"}},
		{"caret constraint", nil, []string{"^2"}, 0, []string{"2.7"}},
		{"nothing matches", []string{"9.*"}, nil, 0, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSelector(tc.tags, tc.constraints, tc.newest)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Select(alpine); !slices.Equal(got, tc.want) {
				t.Errorf("Select = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewSelectorRejects(t *testing.T) {
	tests := []struct {
		name        string
		tags        []string
		constraints []string
		newest      int
	}{
		{"bad regular expression", []string{"~3.("}, nil, 0},
		{"bad glob", []string{"3.["}, nil, 0},
		{"empty pattern", []string{""}, nil, 0},
		{"bad constraint", nil, []string{">=one"}, 0},
		{"negative newest", nil, nil, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSelector(tc.tags, tc.constraints, tc.newest); err == nil {
				t.Errorf("NewSelector(%q, %q, %d) accepted", tc.tags, tc.constraints, tc.newest)
			}
		})
	}
}
