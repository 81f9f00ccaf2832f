//go:build !linux

package roles

import "net"

// deferAccept has no equivalent here: connections are accepted at once.
func deferAccept(net.Listener) {}
