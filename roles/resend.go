package roles

import "github.com/occase/occase/moderation"

// startNoticeResend runs, on every db node, the automatic resend of the
// removal notices kept unsent (moderation.Resender): with or without the
// moderation API, since a removal made through the CLI on Redis keeps its
// notice as well. The nodes pace each notice together through Redis.
func (s *Server) startNoticeResend() {
	svc := moderation.New(s.broker, s.cfg.Reports.OrDefaults().Queue, s.cfg.Chat.QueueTTL, s.cfg.Clock, s.log.Named("moderation"))
	r := moderation.NewResender(svc, s.cfg.NoticeResend, s.m.reg)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		r.Run(s.bgCtx)
	}()
}
