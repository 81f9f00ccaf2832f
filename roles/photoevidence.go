package roles

import (
	"context"

	"go.uber.org/zap"
)

// Photos of the copies kept for review (docs/security.md "Photos of
// hidden and removed listings", "Evidence kept when an author deletes a
// reported listing"). An author's delete of a listing hidden pending
// review takes it from everyone, but keeps its reports, its hidden mark
// and a copy of it in {posts}:gone for the moderators: its photos are
// their evidence. The follower keeps them withheld, neither served nor
// purged, until a moderator decides: a dismissal or a removal of the
// copy announces the id deleted again, and with no copy left then the
// follower purges them as for any hidden listing that goes.
//
// The follower learns it from Redis, not from the envelope (which is the
// same whoever deleted the post, on a node of any version): one read of
// the copy per deletion of a post it withholds, which is rare.

// keptForReview tells whether post id, announced deleted, is kept for
// review: then its photos stay withheld. Only a post the follower
// withholds is looked up, and not one a removal on this node is purging
// (held). A read that fails keeps the photos withheld, and reloads.
func (f *photoFollower) keptForReview(ctx context.Context, id uint64) bool {
	if _, ok := f.photosOf[id]; !ok || f.isHeld(id) {
		return false
	}
	copies, err := f.b.EvidenceJSON(ctx, []uint64{id})
	if err != nil {
		f.log.Warn("read whether a deleted hidden post is kept for review failed; its photos stay withheld, reloading",
			zap.Uint64("post", id), zap.Error(err))
		f.askReload()
		return true
	}
	if copies[0] == "" {
		return false
	}
	f.log.Info("photos of a hidden post its author deleted stay withheld: kept for review", zap.Uint64("post", id))
	return true
}

// loadEvidence fills in, for the hidden ids Redis holds no post of
// (bodies[i] == ""), the copy kept for review, when there is one: its
// photos are withheld as those of a hidden post.
func (f *photoFollower) loadEvidence(ctx context.Context, ids []uint64, bodies []string) error {
	var gone []uint64
	var at []int
	for i, b := range bodies {
		if b == "" {
			gone, at = append(gone, ids[i]), append(at, i)
		}
	}
	copies, err := f.b.EvidenceJSON(ctx, gone)
	if err != nil {
		return err
	}
	for j, c := range copies {
		bodies[at[j]] = c
	}
	return nil
}
