package roles

import (
	"net"

	"golang.org/x/sys/unix"
)

// deferAccept asks the kernel to hand the node a connection only once its
// client has sent something (TCP_DEFER_ACCEPT): the front door's first
// read then finds the request already there, instead of a read that finds
// nothing, a wait in the poller and a second read. A client that connects
// and sends nothing for deferAcceptSeconds is handed over anyway (and then
// meets --read-header-timeout). Best effort: a listener that is not TCP,
// or a kernel that refuses, keeps the ordinary accept.
func deferAccept(l net.Listener) {
	tl, ok := l.(*net.TCPListener)
	if !ok {
		return
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
	})
}

const deferAcceptSeconds = 5
