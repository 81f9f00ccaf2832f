//go:build !linux

package images

import "errors"

// statFS is not implemented here: the disk guard lets every upload through
// (docs/security.md, "Image lifecycle").
func statFS(string) (free, total uint64, err error) {
	return 0, 0, errors.New("free space: not implemented on this system")
}
