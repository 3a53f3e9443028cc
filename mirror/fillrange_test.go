package mirror

import "testing"

func TestParseSingleRange(t *testing.T) {
	const size = 1000
	tests := []struct {
		header        string
		want          byteRange
		ok, unsatisfy bool
	}{
		{"bytes=0-99", byteRange{0, 99}, true, false},
		{"bytes=100-", byteRange{100, 999}, true, false},
		{"bytes=900-5000", byteRange{900, 999}, true, false},
		{"bytes=-10", byteRange{990, 999}, true, false},
		{"bytes=-5000", byteRange{0, 999}, true, false},
		{"bytes=1000-", byteRange{}, true, true},
		{"bytes=-0", byteRange{}, true, true},
		{"bytes=0-0,100-199", byteRange{}, false, false},
		{"bytes=5-4", byteRange{}, false, false},
		{"items=0-1", byteRange{}, false, false},
		{"bytes=a-b", byteRange{}, false, false},
		{"bytes=10", byteRange{}, false, false},
	}
	for _, tc := range tests {
		got, ok, unsatisfiable := parseSingleRange(tc.header, size)
		if got != tc.want || ok != tc.ok || unsatisfiable != tc.unsatisfy {
			t.Errorf("parseSingleRange(%q, %d) = %v, %v, %v; want %v, %v, %v",
				tc.header, size, got, ok, unsatisfiable, tc.want, tc.ok, tc.unsatisfy)
		}
	}
}
