package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"go.uber.org/zap"
)

// The embedded server keeps its data across restarts in a snapshot file:
// written atomically (a temporary file, fsync, rename, fsync of the
// directory) every SnapshotEvery and at Close, read back at Open. A crash
// loses what changed since the last snapshot.

// snapshotScript reads every key in one atomic step (a script runs alone),
// so that a snapshot never holds half of a multi-key change.
var snapshotScript = newScript("snapshot", `
local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local t = redis.call('TYPE', k)
  if type(t) == 'table' then t = t['ok'] end
  local v = {}
  if t == 'string' then v = {redis.call('GET', k)}
  elseif t == 'hash' then v = redis.call('HGETALL', k)
  elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
  elseif t == 'set' then v = redis.call('SMEMBERS', k)
  elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  end
  out[#out+1] = {k, t, redis.call('PTTL', k), v}
end
return out`)

type snapshotFile struct {
	Version int           `json:"version"`
	Saved   int64         `json:"saved_ms"`
	Keys    []snapshotKey `json:"keys"`
}

type snapshotKey struct {
	Key   string   `json:"k"`
	Type  string   `json:"t"`
	TTLms int64    `json:"ttl_ms,omitempty"` // remaining time to live; 0: none
	Vals  []string `json:"v"`
}

// snapshot reads the whole embedded server.
func (c *Client) snapshot(ctx context.Context) ([]byte, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	rows, err := snapshotScript.Exec(ctx, c.rc, nil, nil).ToArray()
	if err != nil {
		return nil, c.wrap("snapshot", err)
	}
	f := snapshotFile{Version: 1, Saved: time.Now().UnixMilli(), Keys: make([]snapshotKey, 0, len(rows))}
	for _, r := range rows {
		fs, err := r.ToArray()
		if err != nil || len(fs) != 4 {
			return nil, fmt.Errorf("snapshot: unexpected row %v", r)
		}
		var k snapshotKey
		k.Key, _ = fs[0].ToString()
		k.Type, _ = fs[1].ToString()
		if ttl, _ := fs[2].AsInt64(); ttl > 0 {
			k.TTLms = ttl
		}
		vs, _ := fs[3].ToArray()
		k.Vals = make([]string, len(vs))
		for i, v := range vs {
			k.Vals[i], _ = v.ToString()
		}
		f.Keys = append(f.Keys, k)
	}
	return json.Marshal(f)
}

// writeFileAtomic replaces path with b: a reader (or a crash) sees the old
// file or the new one, never part of one.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing left to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// checkSnapshotDir makes sure a snapshot can be written next to path: a
// node that could not (a mistyped path, a read-only volume) used to start
// and log a failed write every interval, its data in memory only.
func checkSnapshotDir(path string) error {
	dir := filepath.Dir(path)
	err := os.MkdirAll(dir, 0o700)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(dir, filepath.Base(path)+".tmp*"); err == nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
	if err != nil {
		return fmt.Errorf("the embedded snapshot %s cannot be written: %w", path, err)
	}
	return nil
}

// restoreSnapshot loads path into m (a fresh server); a missing file is an
// empty start.
func restoreSnapshot(m *miniredis.Miniredis, path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the embedded snapshot: %w", err)
	}
	var f snapshotFile
	if err := json.Unmarshal(b, &f); err != nil {
		return 0, fmt.Errorf("the embedded snapshot %s does not parse (move it away to start empty): %w", path, err)
	}
	if f.Version != 1 {
		return 0, fmt.Errorf("the embedded snapshot %s has version %d, want 1", path, f.Version)
	}
	for _, k := range f.Keys {
		var err error
		switch k.Type {
		case "string":
			if len(k.Vals) == 1 {
				err = m.Set(k.Key, k.Vals[0])
			}
		case "hash":
			if len(k.Vals)%2 == 0 && len(k.Vals) > 0 {
				m.HSet(k.Key, k.Vals...)
			}
		case "list":
			if len(k.Vals) > 0 {
				_, err = m.Push(k.Key, k.Vals...)
			}
		case "set":
			if len(k.Vals) > 0 {
				_, err = m.SAdd(k.Key, k.Vals...)
			}
		case "zset":
			for i := 0; i+1 < len(k.Vals) && err == nil; i += 2 {
				var score float64
				if score, err = strconv.ParseFloat(k.Vals[i+1], 64); err == nil {
					_, err = m.ZAdd(k.Key, score, k.Vals[i])
				}
			}
		default:
			err = fmt.Errorf("type %q is not kept in snapshots", k.Type)
		}
		if err != nil {
			return 0, fmt.Errorf("the embedded snapshot %s, key %q: %w", path, k.Key, err)
		}
		if k.TTLms > 0 {
			m.SetTTL(k.Key, time.Duration(k.TTLms)*time.Millisecond)
		}
	}
	return len(f.Keys), nil
}

// snapshotLoop writes the snapshot every opt.SnapshotEvery until Close,
// which writes the last one itself.
func (c *Client) snapshotLoop(every time.Duration) {
	defer close(c.snapDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.snapStop:
			return
		case <-t.C:
			c.saveSnapshot()
		}
	}
}

// saveSnapshot writes the snapshot when it changed since the last one.
func (c *Client) saveSnapshot() {
	b, err := c.snapshot(context.Background())
	if err == nil {
		// saved_ms changes every time; compare what follows it.
		body := b[bytes.IndexByte(b, ','):]
		if bytes.Equal(body, c.snapLast) {
			return
		}
		if err = writeFileAtomic(c.snapPath, b); err == nil {
			c.snapLast = body
			return
		}
	}
	c.snapFails++
	if c.snapFails == 1 || c.snapFails%100 == 0 {
		c.log.Error("writing the embedded snapshot failed; data since the last one is lost if the process stops",
			zap.String("path", c.snapPath), zap.Error(err), zap.Int("failures", c.snapFails))
	}
}
