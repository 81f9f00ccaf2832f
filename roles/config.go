package roles

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/images"
	"github.com/occase/occase/moderation"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/push"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is everything a node needs; main.go fills it from flags and the
// environment. Every field has a sane default (DefaultConfig).
type Config struct {
	Role      string // db, img or all
	Addr      string // listen address
	AdminAddr string // optional separate listener for /metrics; "" serves it on Addr
	// AdminMaxConns bounds the connections open on AdminAddr; half of it
	// bounds those without a valid operator token yet (adminconns.go).
	AdminMaxConns int
	// AdminTokens, when set, serve the moderation API and page under
	// /admin/ on AdminAddr (which they require), for operators who send
	// one as a bearer token (moderation.MinTokenLen bytes at least); its
	// name is who the moderation log says acted.
	AdminTokens []moderation.Operator
	// PublicURL, optional, is the address users open (checked by
	// moderation.ParsePublicURL): the moderation page shows reported
	// posts' photos from there and links to the listings.
	PublicURL string

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

	// QuietGCPercent is the GOGC a serving node uses while it allocates
	// little against its live heap (gctune.go); 0: GOGC is never changed.
	// GOGC or GOMEMLIMIT in the environment turn it off too.
	QuietGCPercent int

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
	ChatRate      float64
	ChatBurst     int
	PresenceRate  float64
	PresenceBurst int
	RegisterRate  float64 // per client address
	RegisterBurst int
	// RegisterNodeRate bounds registrations on this node from every
	// address together (0: unlimited): rotating through many addresses
	// passes every per-address limit, this one holds.
	RegisterNodeRate  float64
	RegisterNodeBurst int
	FilenamesRate     float64
	FilenamesBurst    int
	// Blocking a user (docs/security.md "Blocking a user"): block,
	// unblock and blocks requests per second per user and their burst,
	// and how many users one user may block (0: the default, 1000).
	BlockRate  float64
	BlockBurst int
	MaxBlocks  int
	// Reporting a post (docs/security.md "Reports"): report requests per
	// second per session and their burst, and the caps of one post's
	// reports and of the review queue in Redis (zero fields:
	// broker.DefaultReportBounds).
	ReportRate  float64
	ReportBurst int
	Reports     broker.ReportBounds

	// Registration budgets (docs/security.md, "Registration").
	// IPv6Prefix is the network size (bits) one IPv6 client is counted by
	// in every per-address limit; 0: 64. IPv4 counts each address.
	IPv6Prefix int
	// RegisterPerDay is how many accounts one client address (group) may
	// create per day, counted in Redis across every node; 0: unlimited.
	RegisterPerDay int64
	// RegisterKey, when set, requires a signup_token in register: an
	// HMAC-SHA256 token the operator's sign-up service gives a verified
	// user (SignupToken).
	RegisterKey []byte
	// What one connection may make the node read, checked before decoding
	// (0 rate: unlimited). Over a budget the reader pauses; a connection
	// with more than AbuseLimit pauses and rate refusals within
	// AbuseWindow is closed with 4006 (AbuseLimit 0: never).
	ReadRateBytes   float64 // bytes per second
	ReadBurstBytes  int
	ReadRateFrames  float64 // frames per second
	ReadBurstFrames int
	AbuseLimit      int
	AbuseWindow     time.Duration
	// AbuseCoolOff is how long a user (or, before login, a client
	// address) closed with 4006 is refused login and registration on this
	// node; 0: not at all.
	AbuseCoolOff time.Duration

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
	// ImageGC: the image sweep (role all runs it every ImageGC.Every;
	// `occase images gc` once). Zero fields take images.DefaultGCConfig.
	ImageGC images.GCConfig
	// NoticeResend: the pace at which a db node resends the removal
	// notices kept unsent (moderation.Resender); zero fields take
	// moderation.DefaultResend. Tests shorten it.
	NoticeResend moderation.ResendConfig

	// Push notifications (push.Config; FCM and APNs off until configured).
	Push push.Config

	Clock func() time.Time

	// Build names the binary in occase_build_info (main fills it).
	Build BuildInfo
	// Collectors are further series for the node's /metrics, made outside
	// roles (the log limiter's occase_log_dropped_total).
	Collectors []prometheus.Collector
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
		AdminMaxConns:     DefaultAdminMaxConns,
		SharedCheckEvery:  10 * time.Second,
		KeyWarnEvery:      time.Minute,
		QuietGCPercent:    25,
		ChatRate:          50,
		ChatBurst:         200,
		PresenceRate:      5,
		PresenceBurst:     20,
		RegisterRate:      1,
		RegisterBurst:     20,
		RegisterNodeRate:  20,
		RegisterNodeBurst: 200,
		FilenamesRate:     1,
		FilenamesBurst:    10,
		BlockRate:         1,
		BlockBurst:        20,
		MaxBlocks:         1000,
		ReportRate:        1.0 / 30,
		ReportBurst:       10,
		Reports:           defaultReportBounds(),
		IPv6Prefix:        defaultIPv6Prefix,
		RegisterPerDay:    20,
		ReadRateBytes:     256 << 10,
		ReadBurstBytes:    1 << 20,
		ReadRateFrames:    100,
		ReadBurstFrames:   400,
		AbuseLimit:        100,
		AbuseWindow:       10 * time.Second,
		AbuseCoolOff:      10 * time.Second,
		Chat:              chat.DefaultConfig(),
		Posts:             posts.DefaultConfig(),
		ImageDir:          "./data/images",
		Images:            images.DefaultConfig(),
		ImageGC:           images.DefaultGCConfig(),
		Push:              push.DefaultConfig(),
		Clock:             time.Now,
	}
}

// DefaultAutoHide is --auto-hide-reports' default: distinct reporters,
// each with an account older than --auto-hide-min-age, that hide a post
// until an operator decides (docs/security.md "Automatic hiding and
// brigading" says why five).
const DefaultAutoHide = 5

func defaultReportBounds() broker.ReportBounds {
	b := broker.DefaultReportBounds
	b.HideAt = DefaultAutoHide
	return b
}

// roleTable says which parts run in each role; "all" is just the union.
var roleTable = map[string][]string{
	"db":  {"db"},
	"img": {"img"},
	"all": {"db", "img"},
}

// Check says what is wrong with c, if anything, before New opens
// anything: main calls it before its first log line, so a mistyped flag
// is one line.
func (c Config) Check() error {
	db, img, err := c.parts()
	if err != nil {
		return err
	}
	if c.Secret != nil && len(c.Secret) != 32 {
		return fmt.Errorf("the password-digest secret must be 32 bytes, got %d", len(c.Secret))
	}
	if db && !img && len(c.Redis.Addrs) == 0 && len(c.Redis.Sentinels) == 0 {
		return errors.New("role db needs --redis, the Redis shared by every node (--redis=embedded runs the in-process server, for a single node)")
	}
	return nil
}

func (c Config) parts() (db, img bool, err error) {
	ps, ok := roleTable[c.Role]
	if !ok {
		return false, false, fmt.Errorf("unknown role %q (want db, img or all)", c.Role)
	}
	// Zero here is no "off": every connection would be closed at once
	// (4002, 4005, 1009, 4004).
	switch {
	case c.LoginTimeout <= 0:
		return false, false, fmt.Errorf("--login-timeout %v: want more than 0", c.LoginTimeout)
	case c.IdleTimeout <= 0:
		return false, false, fmt.Errorf("--idle-timeout %v: want more than 0", c.IdleTimeout)
	case c.MaxFrame < 1024:
		return false, false, fmt.Errorf("--max-frame %d: want at least 1024 bytes", c.MaxFrame)
	case c.SendQueue < 1:
		return false, false, fmt.Errorf("--send-queue %d: want at least 1", c.SendQueue)
	case c.SendQueueBytes < 1:
		return false, false, fmt.Errorf("--send-queue-bytes %d: want at least 1", c.SendQueueBytes)
	}
	if c.WriteDelay < 0 || c.WriteDelay > time.Second {
		return false, false, fmt.Errorf("--write-delay %v: want 0 to 1s", c.WriteDelay)
	}
	if c.IPv6Prefix < 0 || c.IPv6Prefix > 128 {
		return false, false, fmt.Errorf("--ipv6-prefix %d: want 1 to 128 (0: 64)", c.IPv6Prefix)
	}
	if c.RegisterKey != nil && len(c.RegisterKey) < 16 {
		return false, false, fmt.Errorf("--register-key: want at least 16 bytes, got %d", len(c.RegisterKey))
	}
	if c.ReadRateBytes > 0 && c.ReadBurstBytes < 1024 {
		return false, false, fmt.Errorf("--read-burst-bytes %d: want at least 1024 when --read-rate-bytes is set", c.ReadBurstBytes)
	}
	if c.ReadRateFrames > 0 && c.ReadBurstFrames < 1 {
		return false, false, fmt.Errorf("--read-burst-frames %d: want at least 1 when --read-rate-frames is set", c.ReadBurstFrames)
	}
	if c.AbuseLimit > 0 && c.AbuseWindow <= 0 {
		return false, false, fmt.Errorf("--abuse-window %v: want a positive window when --abuse-limit is set", c.AbuseWindow)
	}
	if c.AdminAddr != "" && c.AdminMaxConns < 2 {
		return false, false, fmt.Errorf("--admin-max-conns %d: want at least 2 (half of it may be connections without a token yet)", c.AdminMaxConns)
	}
	if len(c.AdminTokens) > 0 && c.AdminAddr == "" {
		return false, false, fmt.Errorf("--admin-token-file needs --admin-addr: the moderation API is served on the admin listener only, never on the public one")
	}
	for _, o := range c.AdminTokens {
		if len(o.Token) < moderation.MinTokenLen {
			return false, false, fmt.Errorf("--admin-token-file: the token of %s holds %d bytes, want at least %d", o.Name, len(o.Token), moderation.MinTokenLen)
		}
	}
	for _, p := range ps {
		db = db || p == "db"
		img = img || p == "img"
	}
	return db, img, nil
}
