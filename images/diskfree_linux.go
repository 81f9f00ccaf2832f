package images

import "syscall"

// statFS returns the bytes an unprivileged process may still write on the
// file system holding dir, and its size.
func statFS(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}
