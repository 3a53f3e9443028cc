//go:build unix

package cache

import "golang.org/x/sys/unix"

// freeBytes returns the space available to this process on the file
// system of dir, and whether it could be read.
func freeBytes(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
