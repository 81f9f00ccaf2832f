package moderation

import (
	"context"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// Photos of a removed listing (docs/security.md, "Photos of hidden and
// removed listings"): after a removal, the Service hands the removed
// post's JSON to a PhotoPurger, which deletes the photos no other live
// post links (on a node with the image store) or asks the nodes that have
// one to (on the photos channel). A purge that fails never undoes the
// removal: the answer and the moderation log say so, and the image sweep
// deletes the photos later (--image-orphan-age after they were stored).

// PhotoPurger deletes, or asks for the deletion of, the photos of removed
// post id, whose JSON was post.
type PhotoPurger interface {
	PurgePhotos(ctx context.Context, id uint64, post string) Photos
}

// PhotoHolder is a PhotoPurger that wants to know of a removal before it
// is made: Hold(id) is called before the post is removed, and the func
// it returns once its photos are purged (or the removal failed).
type PhotoHolder interface {
	Hold(id uint64) (release func())
}

// Photos is what a PhotoPurger did.
type Photos struct {
	// Photos are the removed post's photo paths: what to purge from a
	// CDN in front of the img nodes.
	Photos []string
	// Deleted is how many were deleted now (nil: not known here, the
	// purge was asked of the img nodes, or it failed).
	Deleted *int
	// Kept is how many another live post links (not deleted).
	Kept int
	// Sent is how many nodes with an image store were asked to purge.
	Sent int
	// Error is a stable code when the photos were not purged here.
	Error string
}

// Codes of PhotosAnswer.PhotosError.
const (
	// PhotosPurgeFailed: the purge failed (Redis or the disk); the
	// photos go with the image sweep.
	PhotosPurgeFailed = "purge_failed"
	// PhotosNoImgNode: no node with the image store follows this Redis
	// (role all, or role img given --redis); the photos go with the
	// image sweep.
	PhotosNoImgNode = "no_img_node"
	// PhotosNotPurged: this node has no way to purge (no PhotoPurger).
	PhotosNotPurged = "not_purged"
)

const maxLoggedPhotos = 16

// SetPhotoPurger makes removals purge the removed posts' photos with p.
func (s *Service) SetPhotoPurger(p PhotoPurger) { s.photos = p }

// purgePhotos runs the purger on a removed post and fills res, and
// returns the moderation log's words for it.
func (s *Service) purgePhotos(ctx context.Context, id uint64, post string, res *PhotosAnswer) string {
	if post == "" {
		return ""
	}
	var ph Photos
	if s.photos == nil {
		ph = Photos{Photos: PhotoPaths(post), Error: PhotosNotPurged}
	} else {
		ph = s.photos.PurgePhotos(ctx, id, post)
	}
	*res = PhotosAnswer{Photos: ph.Photos, PhotosDeleted: ph.Deleted, PhotosKept: ph.Kept, PhotosSent: ph.Sent, PhotosError: ph.Error}
	if len(ph.Photos) == 0 && ph.Error == "" {
		return "" // no photos: nothing for the log
	}
	var b strings.Builder
	switch {
	case ph.Deleted != nil:
		b.WriteString(strconv.Itoa(*ph.Deleted) + " photos deleted")
		if ph.Kept > 0 {
			b.WriteString(", " + strconv.Itoa(ph.Kept) + " kept (linked by another listing)")
		}
	case ph.Error != "":
		b.WriteString("photos not purged (" + ph.Error + ")")
	default:
		b.WriteString("photo purge sent to " + strconv.Itoa(ph.Sent) + " img nodes")
	}
	// The log keeps 10,000 lines: a post with many photos names the
	// first few (the API answer and the nodes' log have them all).
	if n := len(ph.Photos); n > 0 {
		b.WriteString(": " + strings.Join(ph.Photos[:min(n, maxLoggedPhotos)], " "))
		if n > maxLoggedPhotos {
			b.WriteString(" and " + strconv.Itoa(n-maxLoggedPhotos) + " more")
		}
	}
	return b.String()
}

// PhotoPaths returns the photo paths of a stored post's body (the web
// app's shape, as the report queue shows them), each made absolute.
func PhotoPaths(post string) []string {
	_, _, ims := readPost(post)
	out := make([]string, len(ims))
	for i, p := range ims {
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		out[i] = p
	}
	return out
}

// photosBefore reads, before a removal (live true) or a dismissal, the
// JSON whose photos it purges: the live post's, else the copy kept of
// it after its author deleted it while queued (docs/security.md
// "Evidence kept when an author deletes a reported listing"); a
// dismissal purges only the copy's (a live post stays). "" when there is
// none, or the read failed (logged: the photos then go with the image
// sweep).
func (s *Service) photosBefore(ctx context.Context, id uint64, live bool) string {
	if live {
		ps, err := s.store.PostsJSON(ctx, []uint64{id})
		if err != nil {
			s.log.Warn("moderation: read a post's photos before its removal", zap.Uint64("post", id), zap.Error(err))
			return ""
		}
		if ps[0] != "" {
			return ps[0]
		}
	}
	_, post, found, err := s.store.Evidence(ctx, id)
	if err != nil {
		s.log.Warn("moderation: read the photos of a copy kept for review", zap.Uint64("post", id), zap.Error(err))
		return ""
	}
	if !found {
		return ""
	}
	return post
}
