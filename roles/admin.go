package roles

import (
	"errors"
	"net/http"

	"github.com/occase/occase/images"
	"github.com/occase/occase/moderation"
	"go.uber.org/zap"
)

// moderationHandler is /admin/ on the admin listener: the moderation API
// and page (moderation.Handler) on the node's own broker, so that it
// reaches the embedded server as well as Redis; a JSON 404 saying why
// when the node has no token (--admin-token-file) or no broker (role img).
func (s *Server) moderationHandler() (http.Handler, error) {
	if len(s.cfg.AdminTokens) == 0 {
		return moderation.Off(moderation.ReasonDisabled,
			"the moderation API is off on this node: start it with --admin-token-file (docs/operations.md \"The moderation API\")"), nil
	}
	if s.broker == nil {
		return moderation.Off(moderation.ReasonNotOnRole,
			"moderation is served by nodes of role db or all; this one is role "+s.cfg.Role), nil
	}
	svc := s.moderationService()
	h, err := moderation.NewHandler(moderation.HandlerConfig{
		Service:    svc,
		Operators:  s.cfg.AdminTokens,
		ClientAddr: func(r *http.Request) string { return s.clientKey(clientAddr(r, s.cfg.TrustedProxies)) },
		Metrics:    s.m.reg,
		Log:        s.log.Named("moderation"),
		Now:        s.cfg.Clock,
		PublicURL:  s.cfg.PublicURL,
		// A valid token lifts its connection out of the anonymous ones.
		Authenticated: adminAuthenticated,
	})
	if err != nil {
		return nil, err
	}
	s.modAPI.Store(h)
	s.log.Info("moderation API on the admin listener", zap.String("path", "/admin/"))
	return h, nil
}

// moderationService is the moderation Service on the node's broker: its
// removals purge the removed posts' photos (photos.go).
func (s *Server) moderationService() *moderation.Service {
	svc := moderation.New(s.broker, s.cfg.Reports.OrDefaults().Queue, s.cfg.Chat.QueueTTL, s.cfg.Clock, s.log.Named("moderation"))
	svc.SetPhotoPurger(s.photoPurger())
	if sg, ok := s.names.(*images.Signer); ok {
		// The operator page shows the photos the img nodes withhold.
		svc.SetReviewer(sg.ReviewToken)
	}
	return svc
}

// SetAdminTokens replaces the operators' tokens of the moderation API
// (main calls it on SIGHUP with the token file read again); an error
// when the API is not served (yet), or for a set it refuses (the tokens
// in use stay).
func (s *Server) SetAdminTokens(ops []moderation.Operator) error {
	h := s.modAPI.Load()
	if h == nil {
		return errors.New("the moderation API is not served on this node")
	}
	return h.SetOperators(ops)
}
