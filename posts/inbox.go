package posts

import (
	"sync"
)

// inbox is the unbounded queue between the pub/sub reader (which must never
// block) and Run, which applies messages in arrival order.
type inbox struct {
	mu    sync.Mutex
	items []item
	sig   chan struct{}
}

type item struct {
	payload string
	reload  bool
}

func (q *inbox) push(it item) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.sig <- struct{}{}:
	default:
	}
}

func (q *inbox) take() []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	its := q.items
	q.items = nil
	return its
}
