package caddymodule

import (
	"testing"
	"time"
)

func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * 24 * time.Hour: "30d",
		36 * time.Hour:      "36h0m0s",
		90 * time.Minute:    "1h30m0s",
		0:                   "0s",
	} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%s) = %q, want %q", d, got, want)
		}
	}
}
