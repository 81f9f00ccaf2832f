package posts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Delete handles {"cmd":"delete","id":N}: only the author may delete, and
// Redis checks that atomically with the removal. A post in the review
// queue leaves its reports and a snapshot of itself to the operators
// (broker.DeleteOwnPost): deleting it hides nothing from them.
func (s *Service) Delete(ctx context.Context, c Conn, req *wire.Request) error {
	raw := req.Get("id")
	if raw == nil {
		return malformed(`missing field "id"`)
	}
	id, ok := wire.Uint64(raw)
	if !ok {
		if !isNumber(raw) {
			return malformed(`"id" must be a number`)
		}
		return wire.Errorf(wire.NotFound, "there is no post %s", clip(raw))
	}
	kept, err := s.b.DeleteOwnPost(ctx, id, c.User())
	switch {
	case errors.Is(err, broker.ErrPostNotFound):
		return wire.Errorf(wire.NotFound, "there is no post %d", id)
	case errors.Is(err, broker.ErrNotOwner):
		return wire.Errorf(wire.NotOwner, "post %d is not yours", id)
	case err != nil:
		s.log.Warn("deleting a post failed", zap.Uint64("post", id), zap.Error(err))
		return &wire.Error{Reason: wire.Unavailable, Detail: "try again later"}
	}
	if kept {
		s.log.Info("a reported post deleted by its author; its reports and a snapshot kept for review",
			zap.Uint64("post", id), zap.String("user", c.User()))
	}
	s.forget(id)
	ack := []byte(`{"cmd":"delete_ack","result":"ok","id":`)
	ack = strconv.AppendUint(ack, id, 10)
	c.SendPersistent(append(ack, '}'))
	return nil
}

// forget takes post id, just deleted in Redis, out of this node's index
// at once, telling the subscribers that asked for deletions.
func (s *Service) forget(id uint64) {
	s.mu.Lock()
	s.goneHidden(id)
	s.removed(s.x.remove(id))
	s.x.tidy()
	// Until the deletion comes back through the channel, a late broadcast
	// of the post itself must not bring it back.
	s.tomb[id] = s.cfg.Clock().Unix()
	s.mu.Unlock()
}

// DeleteAllOf deletes every live post of user, each exactly as Delete
// deletes one (the same owner-checked script, so every node drops it and
// its subscribers with deletions get post_deleted), for an account
// deletion; it returns how many it deleted. The posts are found in this
// node's index, which holds every live post (Redis refuses a publish past
// MaxPosts, the index's own bound) unless the node's bound is lower than
// the publisher's (then Redis names the rest): the Redis work is one script per post
// the user holds, which the publish quota bounds (QuotaN per QuotaPeriod
// over a post's lifetime). A Redis failure stops it part-way: what it
// deleted stays deleted, and a second call deletes the rest.
func (s *Service) DeleteAllOf(ctx context.Context, user string) (int, error) {
	if err := s.waitReady(ctx); err != nil {
		return 0, err
	}
	var ids []uint64
	s.mu.RLock()
	for id, p := range s.x.byID {
		if p.From == user {
			ids = append(ids, id)
		}
	}
	for id, p := range s.hidden {
		if p != nil && p.From == user {
			ids = append(ids, id)
		}
	}
	s.mu.RUnlock()
	// A node whose index let posts go (--max-posts lower than the
	// publisher's) holds only some: the author's set in Redis names the
	// rest (broker/mine.go), or, before its backfill is done, the owner
	// hash (a scan of every stored post, once per such deletion).
	if s.mineAsked.Load() {
		var more []uint64
		var err error
		if s.mineReady.Load() {
			more, err = s.b.MineIDs(ctx, user)
		} else {
			more, err = s.b.PostsOf(ctx, user)
		}
		if err != nil {
			return 0, fmt.Errorf("list the posts of %s: %w", user, err)
		}
		ids = append(ids, more...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	n := 0
	for _, id := range ids {
		err := s.b.DeletePost(ctx, id, user)
		switch {
		case errors.Is(err, broker.ErrPostNotFound), errors.Is(err, broker.ErrNotOwner):
			continue // gone meanwhile (expired, deleted), or an index out of step
		case err != nil:
			return n, fmt.Errorf("delete post %d of %s: %w", id, user, err)
		}
		s.forget(id)
		n++
	}
	// The author's set goes with the last post; a member a node of the
	// version before it left would keep it.
	if _, err := s.b.PruneMine(ctx, user); err != nil {
		return n, fmt.Errorf("drop the stale posts of %s: %w", user, err)
	}
	return n, nil
}
