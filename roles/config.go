package roles

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/images"
	"github.com/occase/occase/posts"
)

// Config is everything a node needs; main.go fills it from flags and the
// environment. Every field has a sane default (DefaultConfig).
type Config struct {
	Role      string // db, img or all
	Addr      string // listen address
	AdminAddr string // optional separate listener for /metrics; "" serves it on Addr

	// TLS: a certificate and key, or automatic certificates for Domains
	// (ACME TLS-ALPN-01 on Addr, and HTTP-01 on ACMEHTTPAddr when set).
	TLSCert, TLSKey   string
	Domains           []string
	ACMECache         string
	ACMEHTTPAddr      string
	ReadHeaderTimeout time.Duration
	// HTTPIdleTimeout closes keep-alive HTTP connections idle this long
	// (every listener: main, admin, ACME).
	HTTPIdleTimeout time.Duration

	Redis broker.Options
	// SharedCheckEvery is how often a db node compares its key
	// fingerprints and the data epoch with Redis (also after every
	// reconnect).
	SharedCheckEvery time.Duration
	// KeyWarnEvery is how often an img node logs the uploads it refused
	// for a bad signature (a sign of another --image-key), when any.
	KeyWarnEvery time.Duration
	Secret       []byte // 32-byte key of the password digests; nil: generated

	// Session limits.
	LoginTimeout    time.Duration
	IdleTimeout     time.Duration
	WriteTimeout    time.Duration
	MaxFrame        int64
	SendQueue       int // frames waiting to be written, per connection
	SendQueueBytes  int
	WriteBatch      int           // most frames sent in one write(2); 1 writes each alone
	WriteDelay      time.Duration // a live post to an idle connection waits up to this long for others to share its write
	DisplaceTimeout time.Duration // how long a login waits for an older session to let go
	DrainTimeout    time.Duration
	AllowedOrigins  []string // WebSocket Origin patterns accepted besides same-origin
	// TrustedProxies may set X-Forwarded-For: behind them the per-address
	// limits count the client's address, not the proxy's.
	TrustedProxies []netip.Prefix

	// Per-user and per-address rates (events per second; 0 disables).
	ChatRate       float64
	ChatBurst      int
	PresenceRate   float64
	PresenceBurst  int
	RegisterRate   float64 // per client address
	RegisterBurst  int
	FilenamesRate  float64
	FilenamesBurst int

	Chat chat.Config
	// Posts: zero fields take the posts package's defaults; Clock is set
	// from Clock below. Menu nil with the embedded broker: the demo menu.
	Posts posts.Config

	// Images. ImageKey signs upload names on db and checks them on img, so
	// it must be the same on every node; nil is allowed only in role all,
	// where one random key serves both halves of the same process.
	ImageKey []byte
	ImageDir string // storage root of the img role
	Images   images.Config

	Clock func() time.Time
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Role:              "all",
		Addr:              ":8080",
		LoginTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxFrame:          64 << 10,
		SendQueue:         1024,
		SendQueueBytes:    4 << 20,
		WriteBatch:        64,
		WriteDelay:        50 * time.Millisecond,
		DisplaceTimeout:   3 * time.Second,
		DrainTimeout:      10 * time.Second,
		ACMECache:         "./data/acme",
		ReadHeaderTimeout: 10 * time.Second,
		HTTPIdleTimeout:   120 * time.Second,
		SharedCheckEvery:  10 * time.Second,
		KeyWarnEvery:      time.Minute,
		ChatRate:          50,
		ChatBurst:         200,
		PresenceRate:      5,
		PresenceBurst:     20,
		RegisterRate:      1,
		RegisterBurst:     20,
		FilenamesRate:     1,
		FilenamesBurst:    10,
		Chat:              chat.DefaultConfig(),
		Posts:             posts.DefaultConfig(),
		ImageDir:          "./data/images",
		Images:            images.DefaultConfig(),
		Clock:             time.Now,
	}
}

// roleTable says which parts run in each role; "all" is just the union.
var roleTable = map[string][]string{
	"db":  {"db"},
	"img": {"img"},
	"all": {"db", "img"},
}

func (c Config) parts() (db, img bool, err error) {
	ps, ok := roleTable[c.Role]
	if !ok {
		return false, false, fmt.Errorf("unknown role %q (want db, img or all)", c.Role)
	}
	if c.WriteDelay < 0 || c.WriteDelay > time.Second {
		return false, false, fmt.Errorf("--write-delay %v: want 0 to 1s", c.WriteDelay)
	}
	for _, p := range ps {
		db = db || p == "db"
		img = img || p == "img"
	}
	return db, img, nil
}
