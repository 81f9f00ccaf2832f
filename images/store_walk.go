package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"time"
)

// StoredImage is one file of a DirStore, as the sweep sees it.
type StoredImage struct {
	Key     string // the digest
	Size    int64
	ModTime time.Time // when it was stored: the upload's time
}

// walk calls fn for every stored image, shard by shard, reading each
// directory in slices so that memory stays small whatever the store holds.
// Anything that is not a stored image in its own shard (a temporary, a
// file an operator put there, a symbolic link) is left alone and not
// reported. It stops at the first error of fn or of the file system.
func (d *DirStore) walk(ctx context.Context, fn func(StoredImage) error) error {
	tops, err := d.dirNames(".")
	if err != nil {
		return err
	}
	for _, a := range tops {
		subs, err := d.dirNames(a)
		if err != nil {
			return err
		}
		for _, b := range subs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := d.walkShard(a+"/"+b, a+b, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// dirNames lists the shard directories (two lowercase hex characters) in
// dir.
func (d *DirStore) dirNames(dir string) ([]string, error) {
	f, err := d.root.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("image store: open %s: %w", dir, err)
	}
	defer f.Close()
	es, err := f.ReadDir(-1) // at most 256 shards, plus temporaries at the root
	if err != nil {
		return nil, fmt.Errorf("image store: list %s: %w", dir, err)
	}
	var out []string
	for _, e := range es {
		if e.IsDir() && len(e.Name()) == 2 && isHex(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (d *DirStore) walkShard(dir, prefix string, fn func(StoredImage) error) error {
	f, err := d.root.Open(dir)
	if err != nil {
		return fmt.Errorf("image store: open %s: %w", dir, err)
	}
	defer f.Close()
	for {
		es, err := f.ReadDir(256)
		for _, e := range es {
			n := e.Name()
			if !e.Type().IsRegular() || !isDigest(n) || n[:4] != prefix {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			if err != nil {
				return fmt.Errorf("image store: stat %s: %w", n, err)
			}
			if err := fn(StoredImage{Key: n, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(es) == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("image store: list %s: %w", dir, err)
		}
	}
}

// remove deletes the image under key. Its shard directory stays, even when
// empty: an upload may be about to link a file into it (Create makes the
// directory, then links), and 65,536 empty directories are the most there
// can be.
func (d *DirStore) remove(key string) error {
	_, name, err := d.file(key)
	if err != nil {
		return err
	}
	if err := d.root.Remove(path.Clean(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image store: remove %s: %w", key, err)
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
