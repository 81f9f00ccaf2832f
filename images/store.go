package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"
)

// Store keeps uploaded images. It is an interface so that an object store
// can take the place of the directory later; the server needs only these
// two operations. Keys are what the server passes: the 32 lowercase hex
// digest of the upload's name, which identifies the name (one name, one
// upload, whatever the extension).
type Store interface {
	// Create stores everything r yields under key, all or nothing. When key
	// is already present it returns ErrExists and leaves the first content
	// untouched: nothing is ever overwritten.
	Create(ctx context.Context, key string, r io.Reader) error
	// Open returns the content under key, or ErrNotFound. The caller closes
	// Object.Body.
	Open(ctx context.Context, key string) (*Object, error)
}

// Object is stored content, ready for http.ServeContent.
type Object struct {
	Body    io.ReadSeekCloser
	Size    int64
	ModTime time.Time
}

var (
	// ErrExists is returned by Store.Create when the key is already stored.
	ErrExists = errors.New("image already stored")
	// ErrNotFound is returned by Store.Open when the key is not stored.
	ErrNotFound = errors.New("image not found")
)

// tempPrefix marks uploads in progress in the root directory. Shard
// directories have two-character names, so the two never collide.
const tempPrefix = ".upload-"

// DirStore keeps each image in one file under a root directory:
//
//	<root>/<key[0:2]>/<key[2:4]>/<key>
//
// The key is a keyed hash, so the 65,536 shard directories fill evenly, and
// it is lowercase hex, so the layout is the same on case-insensitive file
// systems (upload names differ by case alone). The file has no extension:
// its type is read from its first bytes when served.
//
// Every access goes through an os.Root, so no name, symbolic link or ".."
// can make it read or write outside the root, whatever the caller passes.
type DirStore struct {
	root *os.Root
	dir  string // for statfs (diskfree.go)
}

var _ Store = (*DirStore)(nil)

// NewDirStore opens (creating it if needed) the directory dir as a store.
// It removes upload temporaries older than an hour, which only a crash
// leaves behind; younger ones may belong to another process sharing dir.
func NewDirStore(dir string) (*DirStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	d := &DirStore{root: r, dir: dir}
	if err := d.removeStale(time.Now().Add(-time.Hour)); err != nil {
		r.Close()
		return nil, err
	}
	return d, nil
}

// Close releases the root directory.
func (d *DirStore) Close() error { return d.root.Close() }

func (d *DirStore) removeStale(before time.Time) error {
	dir, err := d.root.Open(".")
	if err != nil {
		return fmt.Errorf("image store: list root: %w", err)
	}
	defer dir.Close()
	entries, err := dir.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("image store: list root: %w", err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		if info, err := e.Info(); err == nil && info.ModTime().Before(before) {
			if err := d.root.Remove(e.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("image store: remove stale %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

func (d *DirStore) file(key string) (dir, name string, err error) {
	// The server only passes digests; refusing anything else keeps this
	// type safe on its own.
	if !isDigest(key) {
		return "", "", fmt.Errorf("image store: bad key %q", key)
	}
	dir = key[0:2] + "/" + key[2:4]
	return dir, path.Join(dir, key), nil
}

// Create writes r to a temporary file in the root, syncs it, and links it
// under its final name. A link fails when the name exists, which is what
// makes the first upload win even between processes; a crash leaves at
// most a temporary, never a partial file under a final name.
func (d *DirStore) Create(ctx context.Context, key string, r io.Reader) (err error) {
	dir, name, err := d.file(key)
	if err != nil {
		return err
	}
	// Cheap early answer for the common duplicate; Link below is the check
	// that counts.
	if _, err := d.root.Lstat(name); err == nil {
		return ErrExists
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := tempPrefix + hex.EncodeToString(rnd[:])
	f, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("image store: create temporary: %w", err)
	}
	// After a successful link the final name keeps the data; the temporary
	// name goes in every case.
	defer func() {
		if rerr := d.root.Remove(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("image store: remove temporary: %w", rerr)
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("image store: write %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("image store: sync %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("image store: close %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, statErr := d.root.Lstat(dir)
	newDir := statErr != nil
	if err := d.root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("image store: make %s: %w", dir, err)
	}
	if err := d.root.Link(tmp, name); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrExists
		}
		return fmt.Errorf("image store: link %s: %w", key, err)
	}
	// The new directory entry must reach the disk too, or a crash could
	// forget an upload that was answered 201.
	syncs := []string{dir}
	if newDir {
		// The shard directories themselves may be new entries too.
		syncs = append(syncs, path.Dir(dir), ".")
	}
	for _, s := range syncs {
		if err := d.syncDir(s); err != nil {
			return err
		}
	}
	return nil
}

func (d *DirStore) syncDir(dir string) error {
	f, err := d.root.Open(dir)
	if err != nil {
		return fmt.Errorf("image store: open %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("image store: sync %s: %w", dir, err)
	}
	return nil
}

// Open opens the file stored under key.
func (d *DirStore) Open(_ context.Context, key string) (*Object, error) {
	_, name, err := d.file(key)
	if err != nil {
		return nil, err
	}
	f, err := d.root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("image store: open %s: %w", key, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("image store: stat %s: %w", key, err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("image store: %s is not a regular file", key)
	}
	// Body stays an *os.File, so that net/http can use sendfile.
	return &Object{Body: f, Size: info.Size(), ModTime: info.ModTime()}, nil
}
