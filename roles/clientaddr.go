package roles

import "net/netip"

// defaultIPv6Prefix is the network one IPv6 client is taken to hold: a
// /64 is what one subscriber, one home or one host usually gets, so
// counting single IPv6 addresses would let one client rotate through 2^64
// of them.
const defaultIPv6Prefix = 64

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
