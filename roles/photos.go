package roles

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/images"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Photos of hidden and removed listings (docs/security.md, "Photos of
// hidden and removed listings").
//
// The img half of a node that reaches Redis (role all; role img given
// --redis) follows the posts channel: a hide withholds the hidden post's
// photos (images.Withheld, one map lookup per GET), a show serves them
// again, an edit of a hidden post changes nothing withheld (it can
// neither serve a photo under review again nor withhold a competitor's)
// but adds what it links to the purge, and a deletion or expiry of a
// hidden post purges every photo it linked while hidden (withheld until
// done). The set is loaded at start and again after every reconnect
// (Redis's hidden set and those posts' JSON). It also follows the photos
// channel: a moderator's removal made where no image store is (role db,
// the CLI) asks it to purge the removed post's photos. The purges one
// batch of envelopes asks for share one pass (flush).
//
// The removal's side is photopurge.go.

// photoQueueMax bounds the envelopes waiting for the follower; past it
// they are dropped for one reload, which reads everything afresh.
const photoQueueMax = 4096

// photoPayloadMax bounds an envelope the follower reads: a post's JSON is
// far smaller.
const photoPayloadMax = 1 << 20

type photoFollower struct {
	b      *broker.Client
	signer *images.Signer
	hidden *images.Withheld
	// purging withholds the photos of a post being purged, so that they
	// are refused from the removal on, not only once deleted.
	purging *images.Withheld
	// gathering withholds the photos of the purges gathered for one pass
	// (jobs), each under a key of its own (seq), so that two purges of
	// one post never replace each other's; the Run goroutine writes it.
	gathering *images.Withheld
	seq       uint64
	gc        *images.GC // nil: no store here (never, today: the follower runs on img)
	log       *zap.Logger
	// photosOf are the photos of each withheld post, for the purge when
	// it goes: every photo it linked while hidden, those an edit dropped
	// included (droppedOf names these); the Run goroutine's alone.
	photosOf  map[uint64][]images.Photo
	droppedOf map[uint64][]images.Photo
	// jobs are the purges gathered from one batch of envelopes, made in
	// one pass (flush); the Run goroutine's alone.
	jobs []purgeJob
	// beforeApply, set by tests, sees each envelope before it is applied
	// (to make the follower lag behind).
	beforeApply atomic.Pointer[func(payload string)]

	mu sync.Mutex
	// held are the posts a removal on this node is purging in its
	// request (hold): their deletion is not purged again by the follower.
	held   map[uint64]int
	queue  []photoItem
	reload bool
	sig    chan struct{}

	purged   prometheus.Counter
	purgeErr prometheus.Counter
	passes   prometheus.Counter
}

// purgeJob is one post's photos to purge, withheld under key in
// gathering until the pass is done.
type purgeJob struct {
	id, key uint64
	ps      []images.Photo
}

// gather queues a purge of ps, post id's photos, for the next pass, and
// withholds those of them in withhold until it is done.
func (f *photoFollower) gather(id uint64, ps []images.Photo, withhold []string) {
	f.seq++
	f.gathering.Set(f.seq, withhold)
	f.jobs = append(f.jobs, purgeJob{id: id, key: f.seq, ps: ps})
}

// purgeBatchPosts bounds the posts whose photos one pass purges (at most
// 256 photos each): a queue of deletions, however long, costs one read of
// every live post per this many.
const purgeBatchPosts = 256

type photoItem struct {
	purge   bool // from the photos channel
	payload string
}

func newPhotoFollower(b *broker.Client, signer *images.Signer, gc *images.GC, maxHidden int, reg prometheus.Registerer, log *zap.Logger) *photoFollower {
	f := &photoFollower{b: b, signer: signer, gc: gc, log: log,
		hidden: images.NewWithheld(maxHidden), purging: images.NewWithheld(0), gathering: images.NewWithheld(0),
		photosOf: map[uint64][]images.Photo{}, droppedOf: map[uint64][]images.Photo{}, held: map[uint64]int{},
		sig: make(chan struct{}, 1),
		purged: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_image_photos_purged_total",
			Help: "Photos deleted at once, linked by no other live post: of listings a moderator removed, or hidden listings that went."}),
		purgeErr: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_image_photo_purge_failures_total",
			Help: "Purges of a removed or deleted hidden listing's photos that failed (the photos then go with the image sweep)."}),
	}
	f.passes = prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_image_photo_purge_passes_total",
		Help: "Reads of every live post made to purge photos: one per removal purged in its request (role all), one per batch of deletions the follower gathered."})
	reg.MustRegister(f.purged, f.purgeErr, f.passes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_image_withheld_posts",
			Help: "Listings hidden pending review whose photos this img node refuses."}, func() float64 { return float64(f.hidden.Posts()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "occase_image_withheld_photos",
			Help: "Photos this img node refuses as those of listings hidden pending review."}, func() float64 { return float64(f.hidden.Photos()) }))
	return f
}

// Has is what the image server asks on every GET.
func (f *photoFollower) Has(digest string) bool {
	return f.hidden.Has(digest) || f.purging.Has(digest) || f.gathering.Has(digest)
}

// Reviewable is what the image server asks of a withheld photo on a GET
// with a valid review URL (images.Reviewable): a photo withheld for
// review may be shown to the operators, one being purged may not.
func (f *photoFollower) Reviewable(digest string) bool {
	return f.hidden.Has(digest) && !f.purging.Has(digest) && !f.gathering.Has(digest)
}

// push queues an envelope; it never blocks (it runs on the subscriber's
// reader).
func (f *photoFollower) push(it photoItem) {
	f.mu.Lock()
	if len(f.queue) >= photoQueueMax {
		f.queue, f.reload = nil, true
	} else {
		f.queue = append(f.queue, it)
	}
	f.mu.Unlock()
	select {
	case f.sig <- struct{}{}:
	default:
	}
}

func (f *photoFollower) askReload() {
	f.mu.Lock()
	f.queue, f.reload = nil, true
	f.mu.Unlock()
	select {
	case f.sig <- struct{}{}:
	default:
	}
}

func (f *photoFollower) take() ([]photoItem, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q, r := f.queue, f.reload
	f.queue, f.reload = nil, false
	return q, r
}

// Run subscribes to the two channels, loads the withheld set, then follows
// until ctx ends. Redis may be unreachable at start: it keeps trying, and
// serves every photo meanwhile.
func (f *photoFollower) Run(ctx context.Context) {
	f.b.Handle(broker.PostsChannel, func(_, payload string) {
		// Most of the channel is new posts: skipped without parsing (the
		// scripts build the envelope, so its start is fixed).
		if strings.HasPrefix(payload, `{"op":"post"`) {
			return
		}
		f.push(photoItem{payload: payload})
	})
	f.b.Handle(broker.PhotosChannel, func(_, payload string) { f.push(photoItem{purge: true, payload: payload}) })
	f.b.OnResubscribed(f.askReload)
	for _, name := range []string{broker.PostsChannel, broker.PhotosChannel} {
		ch := f.b.Key(name)
		if !retryUntil(ctx, f.log, "subscribe to the "+name+" channel", func() error { return f.b.Subscribe(ctx, ch) }) {
			return
		}
		defer f.b.Unsubscribe(context.WithoutCancel(ctx), ch)
	}
	if !retryUntil(ctx, f.log, "load the photos of hidden posts", func() error { return f.load(ctx) }) {
		return
	}
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry:
			retry = nil
			f.askReload()
		case <-f.sig:
			items, reload := f.take()
			if reload {
				if err := f.load(ctx); err != nil {
					f.log.Warn("reloading the photos of hidden posts failed; retrying", zap.Error(err))
					retry = time.After(time.Second)
				}
				continue
			}
			// The purges these envelopes ask for share one read of
			// every live post (flush), made after them: however many
			// hidden listings go at once, the follower is one pass
			// behind at most, and their photos are withheld meanwhile.
			for _, it := range items {
				if fn := f.beforeApply.Load(); fn != nil {
					(*fn)(it.payload)
				}
				if it.purge {
					f.applyPurge(it.payload)
				} else {
					f.apply(ctx, it.payload)
				}
				if len(f.jobs) >= purgeBatchPosts {
					f.flush(ctx)
				}
			}
			f.flush(ctx)
		}
	}
}

func retryUntil(ctx context.Context, log *zap.Logger, what string, fn func() error) bool {
	backoff := broker.Backoff{First: 100 * time.Millisecond, Max: 2 * time.Second}
	var last string
	for {
		err := fn()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if cause := err.Error(); cause != last {
			log.Warn(what+" failed; retrying", zap.Error(err))
			last = cause
		}
		if !backoff.Wait(ctx.Done()) {
			return false
		}
	}
}

// load makes the withheld set the photos of Redis's hidden posts.
func (f *photoFollower) load(ctx context.Context) error {
	ids, err := f.b.HiddenPosts(ctx)
	if err != nil {
		return err
	}
	bodies, err := f.b.PostsJSON(ctx, ids)
	if err != nil {
		return err
	}
	if err := f.loadEvidence(ctx, ids, bodies); err != nil {
		return err
	}
	all := make(map[uint64][]string, len(ids))
	f.photosOf = make(map[uint64][]images.Photo, len(ids))
	f.droppedOf = map[uint64][]images.Photo{}
	for i, id := range ids {
		ps := images.Links(bodies[i], f.signer, images.MaxWithheldPerPost+1)
		all[id] = digests(ps)
		if len(ps) <= images.MaxWithheldPerPost {
			f.photosOf[id] = ps
		}
	}
	if left := f.hidden.Replace(all); left > 0 {
		f.log.Warn("photos of some hidden posts are served: over the withheld set's bounds", zap.Int("posts", left))
	}
	f.log.Info("photos of hidden posts withheld", zap.Int("posts", f.hidden.Posts()), zap.Int("photos", f.hidden.Photos()))
	return nil
}

func digests(ps []images.Photo) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Digest
	}
	return out
}

func paths(ps []images.Photo) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Path()
	}
	return out
}

// apply reads one posts-channel envelope.
func (f *photoFollower) apply(ctx context.Context, payload string) {
	if len(payload) > photoPayloadMax {
		return
	}
	var e struct {
		Op   string          `json:"op"`
		IDs  []uint64        `json:"ids"`
		Post json.RawMessage `json:"post"`
	}
	if json.Unmarshal([]byte(payload), &e) != nil {
		return // the posts service logs and counts what does not parse
	}
	switch e.Op {
	case "hide":
		bodies, err := f.b.PostsJSON(ctx, e.IDs)
		if err == nil {
			// A hide read after its author already deleted the post (this
			// node a moment behind) finds the copy kept for review: its
			// photos are withheld all the same, and the deletion that
			// follows keeps them so (keptForReview).
			err = f.loadEvidence(ctx, e.IDs, bodies)
		}
		if err != nil {
			f.log.Warn("read a hidden post's photos failed; reloading", zap.Error(err))
			f.askReload()
			return
		}
		for i, id := range e.IDs {
			if bodies[i] == "" {
				continue // gone already
			}
			ps := images.Links(bodies[i], f.signer, images.MaxWithheldPerPost+1)
			if !f.hidden.Set(id, digests(ps)) {
				f.log.Warn("photos of a hidden post served: over the withheld set's bounds", zap.Uint64("post", id), zap.Int("photos", len(ps)))
				continue
			}
			f.photosOf[id] = ps
			if len(ps) > 0 {
				// The paths, for a CDN purge: a CDN in front keeps what it
				// cached until purged.
				f.log.Info("photos of a hidden post withheld", zap.Uint64("post", id), zap.Strings("photos", paths(ps)))
			}
		}
	case "show":
		for _, id := range e.IDs {
			delete(f.photosOf, id)
			delete(f.droppedOf, id)
			if d := f.hidden.Drop(id); len(d) > 0 {
				f.log.Info("photos of a post shown again served", zap.Uint64("post", id), zap.Int("photos", len(d)))
			}
		}
	case "del":
		// A hidden listing that goes (removed, deleted by its author,
		// expired) has its photos purged here, withheld until then: its
		// deletion must not serve them again. One its author deleted
		// while under review is kept for the moderators (photoevidence.go).
		for _, id := range e.IDs {
			if f.keptForReview(ctx, id) {
				continue
			}
			ps, ok := f.photosOf[id]
			dropped := f.droppedOf[id]
			delete(f.photosOf, id)
			delete(f.droppedOf, id)
			if !ok {
				f.hidden.Drop(id)
				continue
			}
			// Withheld until purged: what was withheld (the photos it
			// had when hidden), not what an edit added.
			w := f.hidden.Get(id)
			if !f.isHeld(id) {
				f.gather(id, ps, w)
				f.hidden.Drop(id)
				continue
			}
			// The removal's request purges the photos its JSON links,
			// and releases them; those an edit dropped while hidden are
			// not in that JSON: purged here.
			f.purging.Set(id, w)
			f.hidden.Drop(id)
			if len(dropped) > 0 {
				f.gather(id, dropped, w)
			}
		}
	case "upd":
		var p struct {
			ID uint64 `json:"id"`
		}
		if json.Unmarshal(e.Post, &p) != nil || !f.hidden.Holds(p.ID) {
			return
		}
		// What is withheld stays the photos it had when hidden, those
		// under review: an edit neither serves one again (its author
		// editing the link out) nor withholds one it adds (a link
		// copied from a competitor's live listing). Every photo it
		// linked while hidden is purged when it goes (old first, up to
		// the bound), where no live listing links it.
		now := images.Links(string(e.Post), f.signer, images.MaxWithheldPerPost+1)
		all, left := unionPhotos(f.photosOf[p.ID], now, images.MaxWithheldPerPost)
		if left > 0 {
			f.log.Warn("photos an edit added to a hidden post left to the sweep: over the bound a post", zap.Uint64("post", p.ID), zap.Int("photos", left))
		}
		f.photosOf[p.ID] = all
		linked := make(map[string]bool, len(now))
		for _, x := range now {
			linked[x.Digest] = true
		}
		var dropped []images.Photo
		for _, x := range all {
			if !linked[x.Digest] {
				dropped = append(dropped, x)
			}
		}
		if len(dropped) > 0 {
			f.droppedOf[p.ID] = dropped
		} else {
			delete(f.droppedOf, p.ID)
		}
	}
}

// unionPhotos is old then the photos of now not in it (by digest), at
// most max; left is how many of now did not fit.
func unionPhotos(old, now []images.Photo, max int) (all []images.Photo, left int) {
	all = slices.Clone(old)
	seen := make(map[string]bool, len(old)+len(now))
	for _, x := range old {
		seen[x.Digest] = true
	}
	for _, x := range now {
		if seen[x.Digest] {
			continue
		}
		seen[x.Digest] = true
		if len(all) >= max {
			left++
			continue
		}
		all = append(all, x)
	}
	return all, left
}

// purgeMsg is a removal's request on the photos channel.
type purgeMsg struct {
	Op   string          `json:"op"`
	ID   uint64          `json:"id"`
	Post json.RawMessage `json:"post"`
}

func (f *photoFollower) applyPurge(payload string) {
	if f.gc == nil || len(payload) > photoPayloadMax {
		return
	}
	var m purgeMsg
	if json.Unmarshal([]byte(payload), &m) != nil || m.Op != "purge" {
		f.log.Warn("skipped a photos broadcast that does not parse", zap.Int("bytes", len(payload)))
		return
	}
	ps := images.Links(string(m.Post), f.signer, images.MaxWithheldPerPost)
	if len(ps) == 0 {
		return
	}
	f.gather(m.ID, ps, digests(ps))
}

// flush purges the photos of the jobs gathered, in one pass (one read of
// every live post), then stops withholding those of the jobs to release.
func (f *photoFollower) flush(ctx context.Context) {
	if len(f.jobs) == 0 {
		return
	}
	jobs := f.jobs
	f.jobs = nil
	var all []images.Photo
	ids := make([]uint64, 0, len(jobs))
	seen := map[string]bool{}
	for _, j := range jobs {
		ids = append(ids, j.id)
		for _, p := range j.ps {
			if !seen[p.Digest] {
				seen[p.Digest] = true
				all = append(all, p)
			}
		}
	}
	if f.gc != nil {
		pctx, cancel := context.WithTimeout(ctx, PurgeTimeout)
		f.passes.Inc()
		res, err := f.gc.PurgeLinks(pctx, all)
		cancel()
		if err != nil {
			f.log.Error("purge the photos of posts gone", zap.Uint64s("posts", ids), zap.Error(err), zap.Strings("photos", res.Photos))
			f.purgeErr.Inc()
		} else {
			f.purged.Add(float64(res.Deleted))
			f.log.Info("photos of posts gone purged (removed, or hidden and deleted)", zap.Uint64s("posts", ids), zap.Int("deleted", res.Deleted),
				zap.Int("kept", res.Kept), zap.Int("missing", res.Missing), zap.Strings("photos", res.Photos))
		}
	}
	for _, j := range jobs {
		f.gathering.Drop(j.key)
	}
}

// purge deletes the photos of removed post id (its JSON) that no live post
// links, withholding them meanwhile.
func (f *photoFollower) purge(ctx context.Context, id uint64, post string) (images.PurgeResult, error) {
	ps := images.Links(post, f.signer, images.MaxWithheldPerPost)
	if len(ps) == 0 {
		return images.PurgeResult{}, nil
	}
	f.purging.Set(id, digests(ps))
	defer f.purging.Drop(id)
	return f.purgeLinks(ctx, id, ps, "photos of a removed post purged")
}

// purgeLinks deletes the photos ps of post id, gone, that no live post
// links, and logs done.
func (f *photoFollower) purgeLinks(ctx context.Context, id uint64, ps []images.Photo, done string) (images.PurgeResult, error) {
	f.passes.Inc()
	res, err := f.gc.PurgeLinks(ctx, ps)
	if err != nil {
		f.log.Error("purge the photos of a post", zap.Uint64("post", id), zap.Error(err), zap.Strings("photos", res.Photos))
		f.purgeErr.Inc()
		return res, err
	}
	f.purged.Add(float64(res.Deleted))
	f.log.Info(done, zap.Uint64("post", id), zap.Int("deleted", res.Deleted),
		zap.Int("kept", res.Kept), zap.Int("missing", res.Missing), zap.Strings("photos", res.Photos))
	return res, nil
}

// hold marks post id as purged by a removal's request on this node, from
// before the removal until the returned func, called after the purge,
// which also ends the withholding a deletion seen meanwhile began.
func (f *photoFollower) hold(id uint64) func() {
	f.mu.Lock()
	f.held[id]++
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		if f.held[id]--; f.held[id] <= 0 {
			delete(f.held, id)
		}
		f.mu.Unlock()
		f.purging.Drop(id)
	}
}

func (f *photoFollower) isHeld(id uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[id] > 0
}
