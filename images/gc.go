package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Image garbage collection (docs/operations.md, "Image lifecycle"). A sweep
// reads every live post, keeps the set of stored images they link to, and
// deletes each stored image that no post links to and that was stored more
// than GCConfig.OrphanAge ago. The age is the file's modification time,
// which is when the upload was stored: the name's issue day is not on disk
// (files are named by digest alone, and the digest does not give the name
// back), and the upload is never earlier than the issue, so an image
// stored longer ago than OrphanAge was also issued longer ago.

// GCConfig holds the sweep's options. Zero fields take the defaults of
// DefaultGCConfig.
type GCConfig struct {
	// Every is how often a node that runs the sweep itself (role all)
	// sweeps; 0 turns that off. Not used by GC.
	Every time.Duration
	// OrphanAge is how long an image may stay unlinked: the time an app
	// has between uploading a picture and publishing the post that shows
	// it.
	OrphanAge time.Duration
	// DeleteRate caps deletions per second, so a first sweep over a large
	// backlog does not take the disk from the uploads and reads; negative:
	// no cap.
	DeleteRate float64
	// LeaseTTL is how long the sweep's lease in Redis lasts unless renewed
	// (it is renewed while the sweep runs); a sweeper that dies frees it
	// after this.
	LeaseTTL time.Duration
	// DryRun counts what a sweep would delete and deletes nothing.
	DryRun bool
	// Clock reads the time (time.Now when nil).
	Clock func() time.Time
	// Metrics, when set, gets the sweep's series.
	Metrics prometheus.Registerer
}

// DefaultGCConfig: a sweep every 6 hours, images unlinked for 7 days go, at
// most 100 deletions a second, a 2-minute lease.
func DefaultGCConfig() GCConfig {
	return GCConfig{Every: 6 * time.Hour, OrphanAge: 7 * 24 * time.Hour, DeleteRate: 100, LeaseTTL: 2 * time.Minute}
}

// PostSource is what a sweep reads the live posts from (the broker).
type PostSource interface {
	// ScanPosts calls fn with every stored post's JSON; an error means the
	// scan did not see them all.
	ScanPosts(ctx context.Context, fn func(post string)) error
	// ScanEvidence calls fn with the JSON of every post kept for the
	// operators after its author deleted it while reported
	// (docs/security.md "Evidence kept when an author deletes a reported
	// listing"): its photos are evidence too, so they stay linked.
	ScanEvidence(ctx context.Context, fn func(post string)) error
	// PostSeq is the highest post id ever issued.
	PostSeq(ctx context.Context) (uint64, error)
	// PostsJSON reads the JSON of each of ids ("" for one not stored).
	PostsJSON(ctx context.Context, ids []uint64) ([]string, error)
}

// purgeRecheckMax bounds the posts a purge reads again after its scan
// (those issued meanwhile); past it the purge deletes nothing, and the
// photos go with the sweep.
const purgeRecheckMax = 100_000

// Leaser hands out the lease that lets one sweep run at a time over a
// store several nodes share (the broker).
type Leaser interface {
	TakeLease(ctx context.Context, name, token string, ttl time.Duration) (bool, error)
	RenewLease(ctx context.Context, name, token string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, token string) error
}

// LeaseName is the lease a sweep takes (broker.LeaseImageGC).
const LeaseName = "imggc"

// Outcomes of a sweep, in SweepResult.Outcome and the runs metric.
const (
	OutcomeOK      = "ok"      // every post was read; what was unlinked and old is gone
	OutcomeBusy    = "busy"    // another sweep holds the lease; nothing done
	OutcomeFailed  = "failed"  // the posts or the store could not be read; nothing deleted after the failure
	OutcomeRefused = "refused" // no post was ever published under this Redis and prefix; nothing deleted
)

// SweepResult is what one sweep did.
type SweepResult struct {
	Outcome    string
	Posts      int   // live posts read
	Evidence   int   // posts kept for the operators, deleted by their authors, read
	Links      int   // distinct linked images (by digest)
	Stored     int   // images found in the store
	Linked     int   // of those, linked from a live post
	Young      int   // unlinked, but stored within OrphanAge
	Deleted    int   // unlinked and old: deleted (counted only, in a dry run)
	BytesFreed int64 // their size
	DryRun     bool
	Took       time.Duration
}

// GC sweeps a DirStore against the posts of one Redis.
type GC struct {
	cfg    GCConfig
	signer *Signer
	store  *DirStore
	posts  PostSource
	lease  Leaser // nil: this process is the only one to sweep the store
	log    *zap.Logger

	swept, freed prometheus.Counter
	runs         *prometheus.CounterVec
	lastRun      prometheus.Gauge
	lastOK       prometheus.Gauge
	stored       prometheus.Gauge
}

// NewGC returns a sweeper of st that keeps the images the posts of ps link
// to under s's key. lease may be nil when no other process sweeps st.
func NewGC(cfg GCConfig, s *Signer, st *DirStore, ps PostSource, lease Leaser, log *zap.Logger) *GC {
	def := DefaultGCConfig()
	if cfg.OrphanAge <= 0 {
		cfg.OrphanAge = def.OrphanAge
	}
	if cfg.DeleteRate == 0 {
		cfg.DeleteRate = def.DeleteRate
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = def.LeaseTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	g := &GC{cfg: cfg, signer: s, store: st, posts: ps, lease: lease, log: log,
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_images_swept_total",
			Help: "Stored images deleted by the image sweep: linked from no live post, older than --image-orphan-age."}),
		freed: prometheus.NewCounter(prometheus.CounterOpts{Name: "occase_image_bytes_freed_total",
			Help: "Bytes of the images the image sweep deleted."}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "occase_image_gc_runs_total",
			Help: "Image sweeps, by outcome: ok, busy (another holds the lease), failed (nothing deleted after the failure), refused."}, []string{"outcome"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Name: "occase_image_gc_last_run_timestamp_seconds",
			Help: "When the last image sweep ended (Unix seconds), whatever its outcome."}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "occase_image_gc_last_success_timestamp_seconds",
			Help: "When the last image sweep that read every post and finished ended (Unix seconds); alert when it falls behind."}),
		stored: prometheus.NewGauge(prometheus.GaugeOpts{Name: "occase_image_gc_stored_images",
			Help: "Images the last finished image sweep found in the store, before it deleted any."}),
	}
	for _, o := range []string{OutcomeOK, OutcomeBusy, OutcomeFailed, OutcomeRefused} {
		g.runs.WithLabelValues(o) // exported from 0
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(g.swept, g.freed, g.runs, g.lastRun, g.lastOK, g.stored)
	}
	return g
}

// errLeaseLost stops a sweep whose lease expired under it: another may be
// sweeping now.
var errLeaseLost = errors.New("image sweep: lost the lease")

// Sweep runs one sweep. Its error says why it did not finish; the result
// says what it did (a failed sweep may have deleted some images before the
// failure, never after it, and never before every post was read).
func (g *GC) Sweep(ctx context.Context) (res SweepResult, err error) {
	start := g.cfg.Clock()
	res.DryRun = g.cfg.DryRun
	defer func() {
		res.Took = g.cfg.Clock().Sub(start)
		if res.Outcome == "" {
			res.Outcome = OutcomeFailed
		}
		g.runs.WithLabelValues(res.Outcome).Inc()
		end := float64(g.cfg.Clock().Unix())
		g.lastRun.Set(end)
		if res.Outcome == OutcomeOK {
			g.lastOK.Set(end)
		}
		g.logResult(res, err)
	}()

	var token string
	if g.lease != nil {
		var b [16]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
		ok, err := g.lease.TakeLease(ctx, LeaseName, token, g.cfg.LeaseTTL)
		if err != nil {
			return res, fmt.Errorf("image sweep: take the lease: %w", err)
		}
		if !ok {
			res.Outcome = OutcomeBusy
			return res, nil
		}
		defer func() {
			// Released even when ctx ended: the next sweep need not wait
			// for the expiry.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := g.lease.ReleaseLease(rctx, LeaseName, token); err != nil {
				g.log.Warn("image sweep: release the lease", zap.Error(err))
			}
		}()
	}
	renewed := g.cfg.Clock()
	keepLease := func() error {
		if g.lease == nil || g.cfg.Clock().Sub(renewed) < g.cfg.LeaseTTL/3 {
			return nil
		}
		ok, err := g.lease.RenewLease(ctx, LeaseName, token, g.cfg.LeaseTTL)
		if err != nil {
			return fmt.Errorf("image sweep: renew the lease: %w", err)
		}
		if !ok {
			return errLeaseLost
		}
		renewed = g.cfg.Clock()
		return nil
	}

	// Every live post is read before anything is deleted: a scan that
	// fails part way returns here with nothing deleted.
	seq, err := g.posts.PostSeq(ctx)
	if err != nil {
		return res, fmt.Errorf("image sweep: read the post counter: %w", err)
	}
	var refs refSet
	var leaseErr error
	err = g.posts.ScanPosts(ctx, func(post string) {
		res.Posts++
		scanNames(post, g.signer, func(digest, _ string) { refs.add(digest) })
		if leaseErr == nil {
			leaseErr = keepLease()
		}
	})
	if err != nil {
		return res, fmt.Errorf("image sweep: read the posts: %w", err)
	}
	err = g.posts.ScanEvidence(ctx, func(post string) {
		res.Evidence++
		scanNames(post, g.signer, func(digest, _ string) { refs.add(digest) })
	})
	if err != nil {
		return res, fmt.Errorf("image sweep: read the posts kept for review: %w", err)
	}
	if leaseErr != nil {
		return res, leaseErr
	}
	refs.seal()
	res.Links = refs.len()
	if res.Posts == 0 && seq == 0 {
		// Never a post under this Redis and prefix: far likelier a wrong
		// --redis or --redis-prefix than a site where nobody published.
		res.Outcome = OutcomeRefused
		return res, nil
	}
	if err := keepLease(); err != nil {
		return res, err
	}

	cutoff := g.cfg.Clock().Add(-g.cfg.OrphanAge)
	var lim *rate.Limiter
	if g.cfg.DeleteRate > 0 {
		lim = rate.NewLimiter(rate.Limit(g.cfg.DeleteRate), max(1, int(g.cfg.DeleteRate/10)))
	}
	err = g.store.walk(ctx, func(im StoredImage) error {
		res.Stored++
		if err := keepLease(); err != nil {
			return err
		}
		switch {
		case refs.has(im.Key):
			res.Linked++
			return nil
		case !im.ModTime.Before(cutoff):
			res.Young++
			return nil
		}
		if !g.cfg.DryRun {
			if lim != nil {
				if err := lim.Wait(ctx); err != nil {
					return err
				}
			}
			if err := g.store.remove(im.Key); err != nil {
				return err
			}
			g.swept.Inc()
			g.freed.Add(float64(im.Size))
		}
		res.Deleted++
		res.BytesFreed += im.Size
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("image sweep: %w", err)
	}
	g.stored.Set(float64(res.Stored))
	if !g.cfg.DryRun {
		// Temporaries only a crash leaves behind (an upload takes at
		// most --image-upload-timeout).
		if err := g.store.removeStale(g.cfg.Clock().Add(-time.Hour)); err != nil {
			return res, err
		}
	}
	res.Outcome = OutcomeOK
	return res, nil
}

func (g *GC) logResult(res SweepResult, err error) {
	fields := []zap.Field{zap.String("outcome", res.Outcome), zap.Bool("dry_run", res.DryRun),
		zap.Int("posts", res.Posts), zap.Int("evidence", res.Evidence), zap.Int("links", res.Links), zap.Int("stored", res.Stored),
		zap.Int("linked", res.Linked), zap.Int("young", res.Young), zap.Int("deleted", res.Deleted),
		zap.Int64("bytes_freed", res.BytesFreed), zap.Duration("took", res.Took)}
	switch {
	case err != nil:
		g.log.Error("image sweep", append(fields, zap.Error(err))...)
	case res.Outcome == OutcomeRefused:
		g.log.Warn("image sweep refused: no post was ever published under this Redis and key prefix (check --redis and --redis-prefix)", fields...)
	default:
		g.log.Info("image sweep", fields...)
	}
}

// Run sweeps every cfg.Every until ctx ends, the first time
// min(cfg.Every, 10 minutes) after it starts: soon enough that a node
// restarted more often than cfg.Every still sweeps (the lease, not the
// start time, keeps the sweeps of several nodes apart), late enough that
// a crash loop does not sweep at every start. A failed sweep is logged and
// tried again at the next period.
func (g *GC) Run(ctx context.Context) error {
	if g.cfg.Every <= 0 {
		return nil
	}
	t := time.NewTimer(min(g.cfg.Every, 10*time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			g.Sweep(ctx)
			t.Reset(g.cfg.Every)
		}
	}
}

// PurgeResult is what one Purge did.
type PurgeResult struct {
	// Photos are the photos the removed post linked (their URL paths,
	// for a CDN purge), Deleted how many of them were deleted now, Kept
	// how many another live post still links (not deleted), Missing how
	// many were not in the store (swept already, or never uploaded).
	Photos  []string
	Deleted int
	Kept    int
	Missing int
}

// Purge deletes, at once, the stored photos that post (the JSON of a post
// a moderator just removed, no longer in Redis) linked and that no live
// post links: a targeted sweep step, with the sweep's own link check and
// safety rules. Every live post is read before anything is deleted, with
// the same generous scan (scanNames); a read that fails deletes nothing;
// nothing is deleted when no post was ever published under this Redis.
// The orphan age does not apply: these photos were published, and the
// listing that showed them is gone for a reason. It takes no lease: it
// deletes only its candidates, each only when unlinked, so a sweep or
// another Purge running beside it can never make it delete a linked
// image (deleting a file already gone is not an error). A dry run counts.
func (g *GC) Purge(ctx context.Context, post string) (res PurgeResult, err error) {
	return g.PurgeLinks(ctx, Links(post, g.signer, MaxWithheldPerPost))
}

// PurgeLinks is Purge of the photos cands (as Links returns them, each
// digest once), those of a post already read. A photo a copy kept for
// review links (PostSource.ScanEvidence) is kept, as one a live post
// links.
func (g *GC) PurgeLinks(ctx context.Context, cands []Photo) (res PurgeResult, err error) {
	// Only names this key signed: what the sweep would count as links.
	cands = slices.DeleteFunc(slices.Clone(cands), func(p Photo) bool { return !g.signer.Valid(p.Digest, p.Name) })
	if len(cands) == 0 {
		return res, nil
	}
	for i, p := range cands {
		if p.Ext == "" {
			if obj, err := g.store.Open(ctx, p.Digest); err == nil {
				if k, err := sniffObject(obj.Body); err == nil && k != kindNone {
					cands[i].Ext = k.ext()
				}
				obj.Body.Close()
			}
		}
		res.Photos = append(res.Photos, cands[i].Path())
	}
	seq, err := g.posts.PostSeq(ctx)
	if err != nil {
		return res, fmt.Errorf("photo purge: read the post counter: %w", err)
	}
	var refs refSet
	posts := 0
	link := func(post string) { scanNames(post, g.signer, func(digest, _ string) { refs.add(digest) }) }
	err = g.posts.ScanPosts(ctx, func(post string) {
		posts++
		link(post)
	})
	if err != nil {
		return res, fmt.Errorf("photo purge: read the posts: %w", err)
	}
	// The copies kept for the operators link their photos as the sweep
	// counts them: a purge never deletes evidence another listing's
	// removal shares.
	err = g.posts.ScanEvidence(ctx, link)
	if err != nil {
		return res, fmt.Errorf("photo purge: read the posts kept for review: %w", err)
	}
	// A post published while the scan ran may have been missed by it
	// (HSCAN promises only what was there throughout): the ids issued
	// since it began are read again, so a listing that links one of
	// these photos the moment it is purged (its author publishing it
	// again, a copy) keeps it. No orphan age protects them here.
	if err := g.recheck(ctx, seq, link); err != nil {
		return res, err
	}
	refs.seal()
	if posts == 0 && seq == 0 {
		return res, errors.New("photo purge: no post was ever published under this Redis and key prefix (check --redis and --redis-prefix)")
	}
	for _, p := range cands {
		if refs.has(p.Digest) {
			res.Kept++
			continue
		}
		obj, err := g.store.Open(ctx, p.Digest)
		if errors.Is(err, ErrNotFound) {
			res.Missing++
			continue
		}
		if err != nil {
			return res, fmt.Errorf("photo purge: %w", err)
		}
		size := obj.Size
		obj.Body.Close()
		if !g.cfg.DryRun {
			if err := g.store.remove(p.Digest); err != nil {
				return res, fmt.Errorf("photo purge: %w", err)
			}
			g.swept.Inc()
			g.freed.Add(float64(size))
		}
		res.Deleted++
	}
	return res, nil
}

// recheck reads the posts issued after seq (in pages of 1,000) and
// passes each one stored to link.
func (g *GC) recheck(ctx context.Context, seq uint64, link func(string)) error {
	now, err := g.posts.PostSeq(ctx)
	if err != nil {
		return fmt.Errorf("photo purge: read the post counter again: %w", err)
	}
	if now <= seq {
		return nil
	}
	if now-seq > purgeRecheckMax {
		return fmt.Errorf("photo purge: %d posts published during the scan (more than %d): nothing deleted", now-seq, purgeRecheckMax)
	}
	for from := seq + 1; from <= now; from += 1000 {
		ids := make([]uint64, 0, 1000)
		for id := from; id <= now && id < from+1000; id++ {
			ids = append(ids, id)
		}
		bodies, err := g.posts.PostsJSON(ctx, ids)
		if err != nil {
			return fmt.Errorf("photo purge: read the posts published during the scan: %w", err)
		}
		for _, b := range bodies {
			if b != "" {
				link(b)
			}
		}
	}
	return nil
}
