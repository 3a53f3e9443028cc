package caddymodule

import (
	"sync"
	"time"
)

// historySize is the number of samples kept: a day at one a minute.
const historySize = 1440

// historyInterval is the time between samples.
const historyInterval = time.Minute

// sample is the cumulative figures of a cache at one moment.
type sample struct {
	At                time.Time
	Hits, Misses      int64 // manifest and blob requests
	BytesFromCache    int64
	BytesFromUpstream int64
}

// history keeps the samples of one handler for the status page's chart.
type history struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

// startHistory samples h now and every historyInterval until stopHistory.
func startHistory(h *Handler) *history {
	hs := &history{stop: make(chan struct{}), done: make(chan struct{})}
	hs.add(h.figures().sample())
	go func() {
		defer close(hs.done)
		t := time.NewTicker(historyInterval)
		defer t.Stop()
		for {
			select {
			case <-hs.stop:
				return
			case <-t.C:
				hs.add(h.figures().sample())
			}
		}
	}()
	return hs
}

// stopHistory ends the sampling.
func (hs *history) stopHistory() {
	close(hs.stop)
	<-hs.done
}

// add appends a sample, dropping the oldest beyond historySize.
func (hs *history) add(s sample) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.samples = append(hs.samples, s)
	if len(hs.samples) > historySize {
		hs.samples = append(hs.samples[:0], hs.samples[len(hs.samples)-historySize:]...)
	}
}

// all returns the samples, oldest first, with a last one taken now.
func (hs *history) all(now sample) []sample {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	out := make([]sample, 0, len(hs.samples)+1)
	out = append(out, hs.samples...)
	return append(out, now)
}

// sample is the part of the figures the history keeps.
func (f figures) sample() sample {
	hits, misses := f.Mirror.Pulls()
	return sample{At: f.At, Hits: hits, Misses: misses,
		BytesFromCache: f.Mirror.BytesFromCache, BytesFromUpstream: f.Mirror.BytesFromUpstream}
}
