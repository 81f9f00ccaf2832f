package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/wire"
)

// dialTimeout bounds one dial plus its register or login reply.
const dialTimeout = 10 * time.Second

var wsDialer = &http.Client{Transport: &http.Transport{
	// Every app opens its own TCP connection, as real apps do; the bench
	// must not share or pool them.
	DisableKeepAlives: true,
	Proxy:             nil,
}}

func dial(ctx context.Context, u string) (*websocket.Conn, error) {
	return dialFrom(ctx, u, nil)
}

// fromClient is an HTTP client whose connections leave from laddr (nil:
// the kernel's choice), so that the server sees as many client addresses
// as the bench has loopback addresses to give.
func fromClient(laddr net.Addr) *http.Client {
	if laddr == nil {
		return wsDialer
	}
	d := &net.Dialer{LocalAddr: laddr, Timeout: dialTimeout}
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil, DialContext: d.DialContext}}
}

// dialFrom opens a WebSocket from the local address laddr (nil: any).
func dialFrom(ctx context.Context, u string, laddr net.Addr) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:      fromClient(laddr),
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

// readFrame reads the next message into buf's storage (grown as needed)
// and returns it: unlike Conn.Read, which allocates a fresh slice and grows
// it through io.ReadAll for every message, a reader that keeps passing back
// what it got allocates nothing once its buffer fits its frames. The
// message is valid until the next call. Give it a context without a Done
// channel on a hot path: for a cancellable one coder/websocket registers
// (and removes) a context.AfterFunc on every frame header and payload it
// reads, and the bench's readers all share one parent context, whose lock
// they would then contend on. Such a read ends when the connection is
// closed.
func readFrame(ctx context.Context, c *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := c.Reader(ctx)
	if err != nil {
		return buf[:0], err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// replyError is a fail reply: its reason is what the report counts.
type replyError struct{ reason string }

func (e *replyError) Error() string { return "server replied " + e.reason }

// reasonOf names err for the errors-by-reason table.
func reasonOf(err error) string {
	var re *replyError
	switch {
	case errors.As(err, &re):
		return re.reason
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case websocket.CloseStatus(err) != -1:
		return fmt.Sprintf("closed_%d", websocket.CloseStatus(err))
	}
	return "connection_error"
}

// request writes frame and reads frames until the one whose cmd is want,
// which must be ok; frames before it are handed to other (may be nil).
func request(ctx context.Context, c *websocket.Conn, frame []byte, want string) (*wire.Request, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
		return nil, err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return nil, err
		}
		r, err := wire.ParseRequest(b)
		if err != nil {
			return nil, fmt.Errorf("server sent an unreadable frame: %w", err)
		}
		if r.Cmd == "error" {
			reason, _ := wire.String(r.Get("reason"))
			return nil, &replyError{reason}
		}
		if r.Cmd != want {
			continue
		}
		if res, _ := wire.String(r.Get("result")); res != "ok" {
			reason, _ := wire.String(r.Get("reason"))
			return nil, &replyError{reason}
		}
		return r, nil
	}
}

// account is a registered user.
type account struct {
	id, pwd string
}

// register opens a connection and registers; the connection stays logged
// in as the new user.
func register(ctx context.Context, u string) (*websocket.Conn, account, error) {
	return registerFrom(ctx, u, nil)
}

// registerFrom is register from the local address laddr.
func registerFrom(ctx context.Context, u string, laddr net.Addr) (*websocket.Conn, account, error) {
	c, err := dialFrom(ctx, u, laddr)
	if err != nil {
		return nil, account{}, err
	}
	r, err := request(ctx, c, []byte(`{"cmd":"register"}`), "register_ack")
	if err != nil {
		c.CloseNow()
		return nil, account{}, err
	}
	id, _ := wire.String(r.Get("id"))
	pwd, _ := wire.String(r.Get("password"))
	if id == "" || pwd == "" {
		c.CloseNow()
		return nil, account{}, &replyError{"register_ack_without_credentials"}
	}
	return c, account{id, pwd}, nil
}

func loginFrame(a account) []byte {
	b := []byte(`{"cmd":"login","user":`)
	b = wire.AppendString(b, a.id)
	b = append(b, `,"password":`...)
	b = wire.AppendString(b, a.pwd)
	return append(b, '}')
}

// login opens a connection and logs in as a.
func login(ctx context.Context, u string, a account) (*websocket.Conn, error) {
	return loginFrom(ctx, u, a, nil)
}

// loginFrom is login from the local address laddr.
func loginFrom(ctx context.Context, u string, a account, laddr net.Addr) (*websocket.Conn, error) {
	c, err := dialFrom(ctx, u, laddr)
	if err != nil {
		return nil, err
	}
	if _, err := request(ctx, c, loginFrame(a), "login_ack"); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

// closeAll closes connections in parallel, each bounded, and waits.
func closeAll(conns []*websocket.Conn) {
	sem := make(chan struct{}, 256)
	done := make(chan struct{}, len(conns))
	for _, c := range conns {
		if c == nil {
			done <- struct{}{}
			continue
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; done <- struct{}{} }()
			// Close waits for the peer's close frame up to 5 s; a reader
			// goroutine (if any) sees it and ends.
			c.Close(websocket.StatusNormalClosure, "bench done")
		}()
	}
	for range conns {
		<-done
	}
}
