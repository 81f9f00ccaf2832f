package roles

// postsLeaveHook wraps the posts service so that a test can act while a
// session's shutdown sits just after posts.Leave.
type postsLeaveHook struct {
	postsService
	after func(c PostsConn)
}

func (h *postsLeaveHook) Leave(c PostsConn) {
	h.postsService.Leave(c)
	h.after(c)
}

// AfterPostsLeave makes every shutdown call fn with the session's user
// right after it left the posts index, on the shutdown's goroutine. Call
// it before any connection.
func (s *Server) AfterPostsLeave(fn func(user string)) {
	s.posts = &postsLeaveHook{postsService: s.posts, after: func(c PostsConn) { fn(c.User()) }}
}
