package roles

import (
	"context"
	"encoding/json"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/images"
	"github.com/occase/occase/moderation"
)

// A moderator's removal purges the removed post's photos (docs/security.md,
// "Photos of hidden and removed listings"): on a node of role all at once,
// in the request, on its own store, answering how many photos it deleted;
// on role db and in the CLI by asking the nodes with a store, on the
// photos channel (photos.go's follower does it there).

// photoPurger is what the moderation service calls after a removal
// (moderation.PhotoPurger): on a node with the image store it purges at
// once; elsewhere it asks the nodes that have one, on the photos channel.
type photoPurger struct {
	b      *broker.Client
	f      *photoFollower // nil: no store on this node
	signer *images.Signer // nil: photos named from the post's "images"
}

// PurgeTimeout bounds a purge made in a removal's request: it reads every
// live post (about 6 to 8 s for a million).
const PurgeTimeout = 30 * time.Second

// Hold is moderation.PhotoHolder: a removal on a node with the store
// purges in its request, and the follower leaves that post to it.
func (p photoPurger) Hold(id uint64) func() {
	if p.f == nil {
		return func() {}
	}
	return p.f.hold(id)
}

func (p photoPurger) PurgePhotos(ctx context.Context, id uint64, post string) moderation.Photos {
	if p.f != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), PurgeTimeout)
		defer cancel()
		res, err := p.f.purge(ctx, id, post)
		out := moderation.Photos{Photos: res.Photos, Deleted: &res.Deleted, Kept: res.Kept}
		if err != nil { // logged by purge
			out.Deleted = nil
			out.Error = moderation.PhotosPurgeFailed
		}
		return out
	}
	return publishPurge(ctx, p.b, p.signer, id, post)
}

// publishPurge asks the nodes with an image store to purge the photos of
// removed post id: those that follow Redis (role all, role img with
// --redis) do.
func publishPurge(ctx context.Context, b *broker.Client, signer *images.Signer, id uint64, post string) moderation.Photos {
	var links []string
	if signer != nil {
		links = paths(images.Links(post, signer, images.MaxWithheldPerPost))
	} else {
		links = moderation.PhotoPaths(post)
	}
	if len(links) == 0 || !json.Valid([]byte(post)) {
		return moderation.Photos{Photos: links} // nothing to ask for
	}
	msg, _ := json.Marshal(purgeMsg{Op: "purge", ID: id, Post: json.RawMessage(post)})
	n, err := b.Publish(ctx, b.Key(broker.PhotosChannel), string(msg))
	out := moderation.Photos{Photos: links, Sent: int(n)}
	switch {
	case err != nil:
		out.Error = moderation.PhotosPurgeFailed
	case n == 0:
		out.Error = moderation.PhotosNoImgNode
	}
	return out
}

// buildPhotos starts the photo follower of the img half, when the node
// reaches Redis: role all through its broker, role img when given --redis
// (its own connection, for this alone). Without Redis every stored photo
// is served, and removals leave photos to the image sweep.
func (s *Server) buildPhotos(ctx context.Context, signer *images.Signer, alone bool) error {
	b := s.broker
	if alone {
		r := s.cfg.Redis
		if len(r.Sentinels) == 0 && (len(r.Addrs) == 0 || len(r.Addrs) == 1 && r.Addrs[0] == broker.Embedded) {
			if len(r.Addrs) > 0 {
				s.log.Warn("role img ignores --redis=embedded: photos of hidden listings are served, and removals leave photos to the image sweep")
			}
			return nil
		}
		ro := r
		ro.Metrics = s.m.reg
		pb, err := broker.Open(ctx, ro, s.log.Named("broker"))
		if err != nil {
			return err
		}
		s.photoBroker, b = pb, pb
	}
	if b == nil || signer == nil {
		return nil
	}
	s.imgGC = s.newImageGC(signer, s.cfg.ImageGC, s.imgStore, b)
	s.photos = newPhotoFollower(b, signer, s.imgGC, s.cfg.Reports.OrDefaults().Queue, s.m.reg, s.log.Named("photos"))
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.photos.Run(s.bgCtx)
	}()
	return nil
}

// NewPhotoPurger is the PhotoPurger of `occase moderate` on a Redis: it
// asks the nodes with an image store to purge (signer, when the command
// has the image key, names the photos as the img nodes do).
func NewPhotoPurger(b *broker.Client, signer *images.Signer) moderation.PhotoPurger {
	return photoPurger{b: b, signer: signer}
}

// photoPurger is the node's PhotoPurger: at once with its own store
// (role all), else through the photos channel.
func (s *Server) photoPurger() moderation.PhotoPurger {
	sg, _ := s.names.(*images.Signer)
	return photoPurger{b: s.broker, f: s.photos, signer: sg}
}
