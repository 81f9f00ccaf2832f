package posts

import (
	"context"
	"errors"
	"strconv"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Delete handles {"cmd":"delete","id":N}: only the author may delete, and
// Redis checks that atomically with the removal.
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
	err := s.b.DeletePost(ctx, id, c.User())
	switch {
	case errors.Is(err, broker.ErrPostNotFound):
		return wire.Errorf(wire.NotFound, "there is no post %d", id)
	case errors.Is(err, broker.ErrNotOwner):
		return wire.Errorf(wire.NotOwner, "post %d is not yours", id)
	case err != nil:
		s.log.Warn("deleting a post failed", zap.Uint64("post", id), zap.Error(err))
		return &wire.Error{Reason: wire.Unavailable, Detail: "try again later"}
	}
	s.mu.Lock()
	s.removed(s.x.remove(id))
	s.x.tidy()
	// Until the deletion comes back through the channel, a late broadcast
	// of the post itself must not bring it back.
	s.tomb[id] = s.cfg.Clock().Unix()
	s.mu.Unlock()
	ack := []byte(`{"cmd":"delete_ack","result":"ok","id":`)
	ack = strconv.AppendUint(ack, id, 10)
	c.SendPersistent(append(ack, '}'))
	return nil
}
