package posts

import (
	"strings"

	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// apply handles one message of the posts channel.
func (s *Service) apply(payload string) {
	var op, origin, postRaw, idsRaw []byte
	err := wire.Scan([]byte(payload), func(f wire.Field) {
		switch f.Key {
		case "op":
			op = f.Value
		case "origin":
			origin = f.Value
		case "post":
			postRaw = f.Value
		case "ids":
			idsRaw = f.Value
		}
	})
	if err != nil {
		s.log.Warn("skipped a posts broadcast that is not a JSON object", zap.Int("bytes", len(payload)))
		s.skipped.Add(1)
		return
	}
	switch string(op) {
	case `"post"`:
		p, err := parseStored(postRaw, s.cfg.LocationDepth, s.cfg.ProductDepth)
		if err != nil {
			s.log.Warn("skipped a broadcast post that does not parse", zap.Error(err), zap.Int("bytes", len(payload)))
			s.skipped.Add(1)
			return
		}
		o, _ := wire.String(origin)
		cutoff := s.cutoff()
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, gone := s.tomb[p.ID]; gone || p.expired(cutoff) {
			return
		}
		if h, ok := s.hidden[p.ID]; ok {
			// Hidden before this node got the post: held aside.
			if h == nil {
				s.setHidden(p.ID, p)
			}
			return
		}
		if !s.admit(p) {
			return
		}
		// The publisher's own connection gets its echo from Publish, right
		// after its publish_ack, never before it.
		var skip Conn
		if strings.HasPrefix(o, s.node) {
			skip = s.pending[o]
		}
		s.delivered.Add(uint64(s.x.fanout(p, liveFrame(p), skip)))
	case `"del"`:
		ids, err := decodeU64s(idsRaw, "ids", 1<<20)
		if err != nil {
			s.log.Warn("skipped a broadcast deletion that does not parse", zap.Int("bytes", len(payload)))
			s.skipped.Add(1)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range ids {
			s.goneHidden(id)
			s.removed(s.x.remove(id))
			// The deletion came back through the channel, after the post
			// itself: the tombstone has done its job.
			delete(s.tomb, id)
		}
		s.x.tidy()
	case `"upd"`:
		p, err := parseStored(postRaw, s.cfg.LocationDepth, s.cfg.ProductDepth)
		if err != nil {
			s.log.Warn("skipped a broadcast change that does not parse", zap.Error(err), zap.Int("bytes", len(payload)))
			s.skipped.Add(1)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.changeHidden(p) {
			s.applyChange(p)
		}
	case `"hide"`, `"show"`:
		// One id per message today; a list leaves room to batch.
		ids, err := decodeU64s(idsRaw, "ids", 1024)
		if err != nil {
			s.log.Warn("skipped a broadcast hide or show that does not parse", zap.Int("bytes", len(payload)))
			s.skipped.Add(1)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range ids {
			if string(op) == `"hide"` {
				s.hideLocked(id)
			} else {
				s.showLocked(id)
			}
		}
	default:
		s.log.Warn("skipped a posts broadcast of unknown kind", zap.ByteString("op", clipBytes(op)))
		s.skipped.Add(1)
	}
}

func clipBytes(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}
