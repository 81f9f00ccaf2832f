package broker

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"
)

// Photos of hidden and removed listings (docs/security.md, "Photos of
// hidden and removed listings").
//
//	photos    pub/sub channel: a moderator's removal, on a node without
//	          the image store (role db, the CLI), asks the nodes that have
//	          one to purge the removed post's photos:
//	          {"op":"purge","id":<id>,"post":<the removed post's JSON>}
//
// The img half of a node reads the posts channel's hide, show, upd and
// del envelopes (posts.go) to keep the photos of hidden posts withheld.

// PhotosChannel is the pub/sub channel of photo purges.
const PhotosChannel = "photos"

// PostsJSON returns the stored JSON of each of ids ("" for an id Redis
// holds no post of), in one round trip.
func (c *Client) PostsJSON(ctx context.Context, ids []uint64) ([]string, error) {
	return c.hashFields(ctx, "data", "read post ", ids, func(s string) string { return s })
}

// EvidenceJSON returns the JSON of each of ids as kept in the gone hash,
// a post its author deleted while queued ("" for an id with no copy
// kept), in one round trip: an img node withholds the photos of the
// copies still hidden (docs/security.md "Photos of hidden and removed
// listings").
func (c *Client) EvidenceJSON(ctx context.Context, ids []uint64) ([]string, error) {
	return c.hashFields(ctx, "gone", "read the copy kept of post ", ids, func(s string) string {
		if _, post, ok := parseGone(s); ok {
			return post
		}
		return ""
	})
}

// hashFields reads the field of each of ids in the posts hash named by
// hash, in one pipelined round trip, and returns what keep makes of each
// value ("" for a field Redis does not hold). PostsJSON and EvidenceJSON
// differ only in the hash and in how a value becomes a post's JSON.
func (c *Client) hashFields(ctx context.Context, hash, what string, ids []uint64, keep func(string) string) ([]string, error) {
	out := make([]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	cmds := make(rueidis.Commands, 0, len(ids))
	for _, id := range ids {
		cmds = append(cmds, c.rc.B().Hget().Key(c.postsKey(hash)).Field(strconv.FormatUint(id, 10)).Build())
	}
	for i, r := range c.rc.DoMulti(ctx, cmds...) {
		s, err := r.ToString()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, c.wrap(what+strconv.FormatUint(ids[i], 10), err)
		}
		out[i] = keep(s)
	}
	return out, nil
}
