package broker

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/rueidis"
)

// Fingerprint is a keyed digest naming key without revealing it: nodes
// compare fingerprints to learn whether they were given the same key. It
// is safe to store and to export (a metric label).
func Fingerprint(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("occase key fingerprint v1"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// ErrKeyMismatch says that the nodes sharing this Redis were given another
// key than this one.
var ErrKeyMismatch = errors.New("key differs from the one the other nodes use")

// CheckFingerprint records fp as the fingerprint of the shared key name
// (<p>keys, field name) unless one is recorded already, and fails with
// ErrKeyMismatch when the recorded one differs.
func (c *Client) CheckFingerprint(ctx context.Context, name, fp string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	k := c.key("keys")
	if err := c.rc.Do(ctx, c.rc.B().Hsetnx().Key(k).Field(name).Value(fp).Build()).Error(); err != nil {
		return c.wrap("record the fingerprint of "+name, err)
	}
	got, err := c.rc.Do(ctx, c.rc.B().Hget().Key(k).Field(name).Build()).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return c.wrap("read the fingerprint of "+name, err)
	}
	if err == nil && got != fp {
		return fmt.Errorf("%s: %w (fingerprint %s recorded in Redis at %s, this node's is %s)", name, ErrKeyMismatch, got, k, fp)
	}
	return nil
}

// Epoch returns the random value that names the data held in Redis
// (<p>epoch), creating it when absent: when the data is lost (a Redis
// without persistence restarted, a flushed database), the key goes with
// it and the next call creates another. created tells that this call made
// it.
func (c *Client) Epoch(ctx context.Context) (epoch string, created bool, err error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	b := make([]byte, 12)
	rand.Read(b)
	fresh := base64.RawURLEncoding.EncodeToString(b)
	k := c.key("epoch")
	set, err := c.rc.Do(ctx, c.rc.B().Set().Key(k).Value(fresh).Nx().Build()).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return "", false, c.wrap("create the data epoch", err)
	}
	if set == "OK" {
		return fresh, true, nil
	}
	got, err := c.rc.Do(ctx, c.rc.B().Get().Key(k).Build()).ToString()
	if err != nil {
		return "", false, c.wrap("read the data epoch", err)
	}
	return got, false, nil
}
