package images

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// listFiles returns every regular file under dir, relative to it.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestDirStoreCreateOpen(t *testing.T) {
	dir := t.TempDir()
	st, err := NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.Open(ctx, vecDigest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open absent: %v, want ErrNotFound", err)
	}
	if err := st.Create(ctx, vecDigest, strings.NewReader("first")); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, vecDigest, strings.NewReader("second")); !errors.Is(err, ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	obj, err := st.Open(ctx, vecDigest)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	got, _ := io.ReadAll(obj.Body)
	if string(got) != "first" || obj.Size != 5 {
		t.Fatalf("stored %q (size %d), want the first upload", got, obj.Size)
	}
	want := []string{vecDigest[:2] + "/" + vecDigest[2:4] + "/" + vecDigest}
	if files := listFiles(t, dir); len(files) != 1 || files[0] != want[0] {
		t.Fatalf("files %v, want %v", files, want)
	}
}

func TestDirStoreBadKeys(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	st, err := NewDirStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, key := range []string{"", "../x", "../../" + vecDigest[6:], "/etc/passwd", strings.ToUpper(vecDigest), vecDigest + "/x"} {
		if err := st.Create(context.Background(), key, strings.NewReader("x")); err == nil {
			t.Fatalf("Create(%q) succeeded", key)
		}
		if _, err := st.Open(context.Background(), key); err == nil {
			t.Fatalf("Open(%q) succeeded", key)
		}
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Fatalf("files written: %v", files)
	}
}

// A symbolic link planted in the root cannot lead a write outside it.
func TestDirStoreSymlinkEscape(t *testing.T) {
	dir := t.TempDir()
	root, outside := filepath.Join(dir, "root"), filepath.Join(dir, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, vecDigest[:2])); err != nil {
		t.Fatal(err)
	}
	st, err := NewDirStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Create(context.Background(), vecDigest, strings.NewReader("x")); err == nil {
		t.Fatal("Create followed a symbolic link out of the root")
	}
	if files := listFiles(t, outside); len(files) != 0 {
		t.Fatalf("written outside the root: %v", files)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("connection lost")
	}
	k := min(r.n, len(p))
	r.n -= k
	return k, nil
}

// A write that fails half way leaves nothing: no final file, no temporary.
func TestDirStoreNoHalfFile(t *testing.T) {
	dir := t.TempDir()
	st, err := NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Create(context.Background(), vecDigest, &failingReader{n: 100_000}); err == nil {
		t.Fatal("Create succeeded with a failing reader")
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Fatalf("left behind: %v", files)
	}
	if _, err := st.Open(context.Background(), vecDigest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after failed Create: %v", err)
	}
}

// Racing uploads of one name: exactly one wins, and its bytes stay.
func TestDirStoreRace(t *testing.T) {
	dir := t.TempDir()
	st, err := NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
			errs[i] = st.Create(context.Background(), vecDigest, bytes.NewReader(body))
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("uploads %d and %d both stored", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrExists):
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no upload stored")
	}
	obj, err := st.Open(context.Background(), vecDigest)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	got, _ := io.ReadAll(obj.Body)
	if !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + winner)}, 64<<10)) {
		t.Fatal("stored bytes are not the winner's")
	}
	if files := listFiles(t, dir); len(files) != 1 {
		t.Fatalf("files %v, want one", files)
	}
}

func TestDirStoreRemovesStaleTemporaries(t *testing.T) {
	dir := t.TempDir()
	old, young := filepath.Join(dir, tempPrefix+"old"), filepath.Join(dir, tempPrefix+"young")
	for _, p := range []string{old, young} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	st, err := NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	files := listFiles(t, dir)
	if len(files) != 1 || files[0] != tempPrefix+"young" {
		t.Fatalf("files %v, want only the young temporary", files)
	}
}
