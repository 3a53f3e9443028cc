package s3tier

import (
	"errors"
	"testing"
)

func TestStreamTransitions(t *testing.T) {
	tests := []struct {
		from streamState
		ev   streamEvent
		want streamState
		bad  bool
	}{
		{streamBucket, evFollow, streamBucket, false},
		{streamBucket, evTakeOver, streamLeading, false},
		{streamBucket, evGiveUp, streamAlone, false},
		{streamBucket, evEnd, streamDone, false},
		{streamLeading, evFollow, streamLeading, true},
		{streamLeading, evTakeOver, streamLeading, true},
		{streamLeading, evGiveUp, streamLeading, true},
		{streamLeading, evEnd, streamDone, false},
		{streamAlone, evFollow, streamAlone, true},
		{streamAlone, evTakeOver, streamAlone, true},
		{streamAlone, evGiveUp, streamAlone, true},
		{streamAlone, evEnd, streamDone, false},
		{streamDone, evFollow, streamDone, true},
		{streamDone, evTakeOver, streamDone, true},
		{streamDone, evGiveUp, streamDone, true},
		{streamDone, evEnd, streamDone, true},
	}
	for _, tc := range tests {
		t.Run(tc.from.String()+" on "+tc.ev.String(), func(t *testing.T) {
			got, err := next(tc.from, tc.ev)
			if bad := errors.Is(err, errBadTransition); bad != tc.bad {
				t.Fatalf("next(%s, %s) error = %v, want a bad transition: %v", tc.from, tc.ev, err, tc.bad)
			}
			if got != tc.want {
				t.Errorf("next(%s, %s) = %s, want %s", tc.from, tc.ev, got, tc.want)
			}
		})
	}
}
