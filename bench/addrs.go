package bench

import (
	"net"
	"net/netip"
)

// addrPool hands out loopback source addresses from one /16 of 127.0.0.0/8
// (all of which Linux routes to lo): 127.<block>.<i/254>.<i%254+1>, so the
// server, which counts per-address limits on the peer address when no
// proxy is trusted, sees up to 65,024 distinct clients per block. Each kind
// of client (the legitimate users, every kind of attacker) gets its own
// block, so that one kind's per-address limits never throttle another.
type addrPool struct {
	block byte
	n     int // addresses in use: index i is taken modulo n
}

// maxPoolAddrs is how many addresses one /16 block yields (x.0 and x.255
// are skipped in the last octet).
const maxPoolAddrs = 256 * 254

func newAddrPool(block byte, n int) *addrPool {
	return &addrPool{block: block, n: max(1, min(n, maxPoolAddrs))}
}

// at is the i-th address, cycling over the pool's n addresses.
func (p *addrPool) at(i int) netip.Addr {
	if i < 0 {
		i = -i
	}
	i %= p.n
	return netip.AddrFrom4([4]byte{127, p.block, byte(i / 254), byte(i%254 + 1)})
}

// tcp is the i-th address as a dialer's local address (any port).
func (p *addrPool) tcp(i int) net.Addr {
	if p == nil {
		return nil
	}
	return &net.TCPAddr{IP: p.at(i).AsSlice()}
}
