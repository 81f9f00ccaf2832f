package roles

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	lb := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"no proxies configured: the peer", "203.0.113.7:5000", []string{"1.2.3.4"}, nil, "203.0.113.7"},
		{"untrusted peer: its header is ignored", "203.0.113.7:5000", []string{"1.2.3.4"}, lb, "203.0.113.7"},
		{"trusted peer: the client it forwards", "10.1.2.3:5000", []string{"198.51.100.9"}, lb, "198.51.100.9"},
		{"a forged left entry is not believed", "10.1.2.3:5000", []string{"6.6.6.6, 198.51.100.9"}, lb, "198.51.100.9"},
		{"two trusted hops", "10.1.2.3:5000", []string{"198.51.100.9, 10.9.9.9"}, lb, "198.51.100.9"},
		{"several header lines", "10.1.2.3:5000", []string{"6.6.6.6", "198.51.100.9"}, lb, "198.51.100.9"},
		{"only trusted hops: the leftmost", "10.1.2.3:5000", []string{"10.7.7.7"}, lb, "10.7.7.7"},
		{"no header from a trusted peer", "10.1.2.3:5000", nil, lb, "10.1.2.3"},
		{"garbage counts against the proxy", "10.1.2.3:5000", []string{"not-an-ip"}, lb, "10.1.2.3"},
		{"ipv6 loopback proxy", "[::1]:5000", []string{"2001:db8::5"}, lb, "2001:db8::5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientAddr(r, tt.trusted); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}
