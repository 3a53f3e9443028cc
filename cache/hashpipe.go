package cache

import (
	"hash"
	"sync"
)

// The copy of a fill overlaps its work on two cores: one goroutine reads
// the network and writes the file (system calls and copies), another
// hashes what was written (SHA-256 runs at about 1.7 GB/s on one core
// here, the bound of a single stream). A small ring of buffers bounds the
// memory and how far the hash may lag.

// pipeBufferSize is the size of one read of a fill, and of one buffer of
// the ring.
const pipeBufferSize = 512 << 10

// pipeRing is how many buffers a fill's copy cycles through.
const pipeRing = 4

// pipeBuffers recycles the ring buffers of fills.
var pipeBuffers = sync.Pool{New: func() any { b := make([]byte, pipeBufferSize); return &b }}

// hashPipe hashes buffers in the order they are handed to it, on its own
// goroutine, and hands them back for the next reads.
type hashPipe struct {
	h hash.Hash
	// inline hashes on the caller's goroutine instead, as fills did
	// before (kept to measure the pipe against it).
	inline bool
	in     chan []byte // bytes to hash, in order
	free   chan []byte // buffers to read into
	done   chan struct{}
	bufs   []*[]byte
}

// newHashPipe starts hashing into h (on the caller's goroutine when
// inline is set).
func newHashPipe(h hash.Hash, inline bool) *hashPipe {
	p := &hashPipe{h: h, inline: inline, in: make(chan []byte, pipeRing), free: make(chan []byte, pipeRing), done: make(chan struct{})}
	for range pipeRing {
		bp := pipeBuffers.Get().(*[]byte)
		p.bufs = append(p.bufs, bp)
		p.free <- *bp
	}
	if inline {
		close(p.done)
	} else {
		go p.run()
	}
	return p
}

func (p *hashPipe) run() {
	defer close(p.done)
	for b := range p.in {
		p.h.Write(b)
		p.free <- b[:cap(b)]
	}
}

// buffer returns a buffer to read into: one the hash is done with.
func (p *hashPipe) buffer() []byte { return <-p.free }

// hash hands b, a buffer of the ring, to be hashed; the pipe takes it.
func (p *hashPipe) hash(b []byte) {
	if p.inline {
		p.h.Write(b)
		p.give(b)
		return
	}
	p.in <- b
}

// give returns an unused buffer of the ring.
func (p *hashPipe) give(b []byte) { p.free <- b[:cap(b)] }

// close waits until everything handed over is hashed, and recycles the
// ring. The hash is then up to date.
func (p *hashPipe) close() {
	if !p.inline {
		close(p.in)
	}
	<-p.done
	for _, bp := range p.bufs {
		pipeBuffers.Put(bp)
	}
}
