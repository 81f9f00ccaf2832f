package roles

import "testing"

func TestAddrGroup(t *testing.T) {
	tests := []struct {
		name, remote string
		bits         int
		want         string
	}{
		{"ipv4 as is", "203.0.113.7", 64, "203.0.113.7"},
		{"ipv4 neighbours apart", "203.0.113.8", 64, "203.0.113.8"},
		{"ipv6 by its /64", "2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
		{"the same /64", "2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"},
		{"the next /64", "2001:db8:1:3::1", 64, "2001:db8:1:3::/64"},
		{"a /48 groups wider", "2001:db8:1:3::1", 48, "2001:db8:1::/48"},
		{"/128 counts each address", "2001:db8::1", 128, "2001:db8::1/128"},
		{"zero bits: the default /64", "2001:db8:1:2::9", 0, "2001:db8:1:2::/64"},
		{"ipv4-mapped is ipv4", "::ffff:198.51.100.9", 64, "198.51.100.9"},
		{"a zone is dropped", "fe80::1%eth0", 64, "fe80::/64"},
		{"host:port", "[2001:db8:1:2::1]:443", 64, "2001:db8:1:2::/64"},
		{"not an address", "unix-socket", 64, "unix-socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := addrGroup(tt.remote, tt.bits); got != tt.want {
				t.Fatalf("addrGroup(%q, %d) = %q, want %q", tt.remote, tt.bits, got, tt.want)
			}
		})
	}
}
