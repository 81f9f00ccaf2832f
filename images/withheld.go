package images

import (
	"slices"
	"sync"
)

// Withheld is the set of stored images an img node refuses to serve: the
// photos of listings hidden pending review (docs/security.md, "Photos of
// hidden and removed listings"). It is fed by the node's follower of the
// posts channel (package roles) and read on every GET, so a read is one
// map lookup under a read lock, never a Redis call.
//
// It is kept by post: a photo two hidden listings link is refused until
// neither is hidden. Its size is bounded by MaxPosts posts times
// MaxPerPost photos each; a post past either bound is not withheld (the
// caller logs it), which can only leave a photo served, never refuse one
// no hidden post links.
type Withheld struct {
	mu     sync.RWMutex
	byPost map[uint64][]string // post id -> digests
	count  map[string]int      // digest -> hidden posts linking it
	// MaxPosts and MaxPerPost bound the set.
	MaxPosts, MaxPerPost int
}

// MaxWithheldPerPost is the most photos of one hidden post withheld; a
// post body at the posts' byte bound links far fewer.
const MaxWithheldPerPost = 256

// NewWithheld returns an empty set of at most maxPosts posts.
func NewWithheld(maxPosts int) *Withheld {
	return &Withheld{byPost: map[uint64][]string{}, count: map[string]int{},
		MaxPosts: maxPosts, MaxPerPost: MaxWithheldPerPost}
}

// Has tells whether the image stored under digest is withheld.
func (w *Withheld) Has(digest string) bool {
	w.mu.RLock()
	_, ok := w.count[digest]
	w.mu.RUnlock()
	return ok
}

// Holds tells whether the photos of post are withheld.
func (w *Withheld) Holds(post uint64) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	_, ok := w.byPost[post]
	return ok
}

// Get returns the digests withheld as the photos of post (nil: none).
func (w *Withheld) Get(post uint64) []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return slices.Clone(w.byPost[post])
}

// Set withholds digests as the photos of post (replacing what it had). It
// reports false, and withholds nothing new, when the set is full or the
// post has more than MaxPerPost photos.
func (w *Withheld) Set(post uint64, digests []string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.setLocked(post, digests)
}

func (w *Withheld) setLocked(post uint64, digests []string) bool {
	_, had := w.byPost[post]
	if len(digests) > w.MaxPerPost || !had && w.MaxPosts > 0 && len(w.byPost) >= w.MaxPosts {
		return false
	}
	w.dropLocked(post)
	d := make([]string, 0, len(digests))
	seen := make(map[string]bool, len(digests))
	for _, x := range digests {
		if !seen[x] {
			seen[x] = true
			d = append(d, x)
			w.count[x]++
		}
	}
	w.byPost[post] = d
	return true
}

// Drop stops withholding the photos of post (those another withheld post
// links stay withheld). It returns the digests post had.
func (w *Withheld) Drop(post uint64) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropLocked(post)
}

func (w *Withheld) dropLocked(post uint64) []string {
	d, ok := w.byPost[post]
	if !ok {
		return nil
	}
	for _, x := range d {
		if w.count[x]--; w.count[x] <= 0 {
			delete(w.count, x)
		}
	}
	delete(w.byPost, post)
	return d
}

// Replace makes the set exactly all (a reload). Posts past the bounds are
// left out; it returns how many.
func (w *Withheld) Replace(all map[uint64][]string) (left int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.byPost, w.count = map[uint64][]string{}, map[string]int{}
	for id, d := range all {
		if !w.setLocked(id, d) {
			left++
		}
	}
	return left
}

// Posts and Photos tell the set's size: posts withheld, distinct photos.
func (w *Withheld) Posts() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.byPost)
}

// Photos is how many distinct photos are withheld.
func (w *Withheld) Photos() int {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.count)
}
