package roles

import (
	"context"

	"github.com/occase/occase/wire"
)

// postsHook wraps the posts service so that a test can act at the moments
// where a session's shutdown and its requests meet.
type postsHook struct {
	postsService
	afterLeave      func(c PostsConn)
	beforeSubscribe func(c PostsConn)
}

func (h *postsHook) Leave(c PostsConn) {
	h.postsService.Leave(c)
	if h.afterLeave != nil {
		h.afterLeave(c)
	}
}

func (h *postsHook) Subscribe(ctx context.Context, c PostsConn, req *wire.Request) error {
	if h.beforeSubscribe != nil {
		h.beforeSubscribe(c)
	}
	return h.postsService.Subscribe(ctx, c, req)
}

func (s *Server) postsHook() *postsHook {
	h, ok := s.posts.(*postsHook)
	if !ok {
		h = &postsHook{postsService: s.posts}
		s.posts = h
	}
	return h
}

// AfterPostsLeave makes every shutdown call fn with the session's user
// right after it left the posts index, on the shutdown's goroutine. Call
// it before any connection.
func (s *Server) AfterPostsLeave(fn func(user string)) {
	s.postsHook().afterLeave = func(c PostsConn) { fn(c.User()) }
}

// BeforePostsSubscribe makes every subscribe call fn with the session's
// user before the posts service sees it. Call it before any connection.
func (s *Server) BeforePostsSubscribe(fn func(user string)) {
	s.postsHook().beforeSubscribe = func(c PostsConn) { fn(c.User()) }
}
