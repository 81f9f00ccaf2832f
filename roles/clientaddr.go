package roles

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// defaultIPv6Prefix is the network one IPv6 client is taken to hold: a
// /64 is what one subscriber, one home or one host usually gets, so
// counting single IPv6 addresses would let one client rotate through 2^64
// of them.
const defaultIPv6Prefix = 64

// clientAddr is the address the per-address limits count: the peer's,
// unless the peer is a trusted proxy; then the nearest address in
// X-Forwarded-For that is not a trusted proxy (read from the right: what a
// client writes on the left is not to be believed).
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	isTrusted := func(a string) bool {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return false
		}
		for _, p := range trusted {
			if p.Contains(ip.Unmap()) {
				return true
			}
		}
		return false
	}
	if len(trusted) == 0 || !isTrusted(host) {
		return host
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !isTrusted(hop) {
			if _, err := netip.ParseAddr(hop); err != nil {
				return host // garbage: count it against the proxy
			}
			return hop
		}
		host = hop
	}
	return host
}

// clientKey is what every per-address limit counts for the client address
// remote (as clientAddr found it): an IPv4 address as is (a /32), an
// IPv6 address by its network of --ipv6-prefix bits (default /64), an
// IPv4-mapped IPv6 address as the IPv4 address. Anything that is not an
// address is counted as itself.
func (s *Server) clientKey(remote string) string {
	return addrGroup(remote, s.cfg.IPv6Prefix)
}

func addrGroup(remote string, ipv6Bits int) string {
	a, err := netip.ParseAddr(remote)
	if err != nil {
		ap, perr := netip.ParseAddrPort(remote)
		if perr != nil {
			return remote
		}
		a = ap.Addr()
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	if ipv6Bits <= 0 || ipv6Bits > 128 {
		ipv6Bits = defaultIPv6Prefix
	}
	p, err := a.Prefix(ipv6Bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}
