package roles

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// tlsConfig returns the TLS setup, or nil for plain TCP. Only HTTP/1.1 is
// offered: WebSockets upgrade over it, and nothing on the connection is
// ever given a deadline after the upgrade, so a quiet WebSocket is not
// cut.
func (s *Server) tlsConfig() (*tls.Config, http.Handler, error) {
	switch {
	case s.cfg.TLSCert != "" || s.cfg.TLSKey != "":
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil, nil
	case len(s.cfg.Domains) > 0:
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(s.cfg.Domains...),
			Cache:      autocert.DirCache(s.cfg.ACMECache),
		}
		c := m.TLSConfig()
		c.MinVersion = tls.VersionTLS12
		c.NextProtos = []string{"http/1.1", acme.ALPNProto}
		return c, m.HTTPHandler(nil), nil
	}
	return nil, nil, nil
}
