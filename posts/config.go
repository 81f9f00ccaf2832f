package posts

import (
	"fmt"
	"net/http"
	"time"

	"github.com/occase/occase/wire"
)

// Config of a Service. Zero fields take the defaults given.
type Config struct {
	// Clock gives the time of dates, quotas and expiry; default time.Now.
	Clock func() time.Time
	// Menu gives the valid codes; nil accepts any well-formed code.
	Menu *Menu
	// LocationDepth and ProductDepth are the filter depths (1..4) used to
	// hash codes; default 3 each. A menu that states another depth is an
	// error.
	LocationDepth int
	ProductDepth  int
	// MaxCatchUp caps the posts sent after a subscribe_ack; default 100.
	MaxCatchUp int
	// QuotaN publishes are allowed per QuotaPeriod; defaults 10 per 24 h.
	QuotaN      int
	QuotaPeriod time.Duration
	// Expiry: posts this old are removed and never returned; default 90 days.
	Expiry time.Duration
	// SweepEvery is the period of the expiry sweep; default 1 minute.
	SweepEvery time.Duration
	// Limits on what a request may hold.
	Limits Limits
	// CORSOrigins allowed to read the HTTP API; default ["*"] (the data is
	// public and no credentials are involved).
	CORSOrigins []string
	// PageSize is the default and MaxPage the largest page of GET
	// /api/posts; defaults 20 and 100.
	PageSize, MaxPage int

	// ReportMinAge: a report counts toward hiding a post automatically
	// (broker.ReportBounds.HideAt) only when its reporter's account is at
	// least this old. Zero: every account counts (no default is taken:
	// DefaultConfig has DefaultReportMinAge).
	ReportMinAge time.Duration

	// MaxScan bounds the posts one read examines (a catch-up, a page or a
	// count of GET /api/posts); default 10,000. A read that reaches it
	// answers what it found with a cursor to continue from.
	MaxScan int
	// ReadRate is the GET /api/posts and /api/posts/{id} requests allowed
	// per second per client address, with bursts of ReadBurst; defaults
	// 20 and 40. A negative rate means no limit.
	ReadRate  float64
	ReadBurst int
	// SubscribeRate is the subscribes allowed per second per user, with
	// bursts of SubscribeBurst; defaults 1 and 20 (a client pages through
	// a backlog by subscribing again). Negative: no limit.
	SubscribeRate  float64
	SubscribeBurst int
	// MaxPosts and MaxPostBytes bound the live posts (count, and total
	// length of their JSON): Redis refuses a publish past them (posts_full)
	// and a node's index holds no more (it keeps the newest). Defaults
	// 500,000 and 512 MiB; negative: no bound.
	MaxPosts     int
	MaxPostBytes int64
	// PostsPerAddress is the publishes allowed per client address
	// (Conn.Client) per UTC day; default 50; negative: no limit.
	PostsPerAddress int
	// EditRate is the update, set_status and renew commands allowed per
	// second per user, with bursts of EditBurst; defaults 0.1 (one per 10
	// s) and 10. Negative: no limit.
	EditRate  float64
	EditBurst int
	// RenewWindow is how long before its expiry a post may be renewed;
	// default 7 days.
	RenewWindow time.Duration
	// MaxWords bounds the distinct words of a node's search index;
	// default 2,000,000 (about 300 MB). Words new to a full index are not
	// indexed (the post is not found by them). Negative: no bound.
	MaxWords int
	// ClientKey gives the client address key of an HTTP request (roles
	// trusts its proxies and groups IPv6 by prefix); default echo's RealIP
	// when the router has an IPExtractor, else the peer's address.
	ClientKey func(*http.Request) string
}

// DefaultConfig returns the documented defaults, for flag definitions.
func DefaultConfig() Config {
	var c Config
	c.defaults()
	c.ReportMinAge = DefaultReportMinAge
	return c
}

// DefaultReportMinAge is the age an account needs for its reports to
// count toward hiding a post automatically (docs/security.md "Automatic
// hiding and brigading").
const DefaultReportMinAge = 7 * 24 * time.Hour

func (c *Config) defaults() error {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.LocationDepth == 0 {
		c.LocationDepth = 3
	}
	if c.ProductDepth == 0 {
		c.ProductDepth = 3
	}
	for _, d := range []int{c.LocationDepth, c.ProductDepth} {
		if _, err := wire.ChannelHash(nil, d); err != nil {
			return err
		}
	}
	if c.Menu != nil {
		if d := c.Menu.Locations.Depth; d != 0 && d != c.LocationDepth {
			return fmt.Errorf("the menu's location depth is %d but the location depth is set to %d", d, c.LocationDepth)
		}
		if d := c.Menu.Products.Depth; d != 0 && d != c.ProductDepth {
			return fmt.Errorf("the menu's product depth is %d but the product depth is set to %d", d, c.ProductDepth)
		}
		m := *c.Menu
		m.Locations.Depth, m.Products.Depth = c.LocationDepth, c.ProductDepth
		c.Menu = &m
	}
	if c.MaxCatchUp <= 0 {
		c.MaxCatchUp = 100
	}
	if c.QuotaN <= 0 {
		c.QuotaN = 10
	}
	if c.QuotaPeriod <= 0 {
		c.QuotaPeriod = 24 * time.Hour
	}
	if c.Expiry <= 0 {
		c.Expiry = 90 * 24 * time.Hour
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = time.Minute
	}
	if len(c.CORSOrigins) == 0 {
		c.CORSOrigins = []string{"*"}
	}
	if c.PageSize <= 0 {
		c.PageSize = 20
	}
	if c.MaxPage <= 0 {
		c.MaxPage = 100
	}
	if c.MaxScan <= 0 {
		c.MaxScan = 10_000
	}
	if c.ReadRate == 0 {
		c.ReadRate = 20
	}
	if c.ReadBurst <= 0 {
		c.ReadBurst = 40
	}
	if c.SubscribeRate == 0 {
		c.SubscribeRate = 1
	}
	if c.SubscribeBurst <= 0 {
		c.SubscribeBurst = 20
	}
	if c.MaxPosts == 0 {
		c.MaxPosts = 500_000
	}
	if c.MaxPostBytes == 0 {
		c.MaxPostBytes = 512 << 20
	}
	if c.PostsPerAddress == 0 {
		c.PostsPerAddress = 50
	}
	if c.EditRate == 0 {
		c.EditRate = 0.1
	}
	if c.EditBurst <= 0 {
		c.EditBurst = 10
	}
	if c.RenewWindow <= 0 {
		c.RenewWindow = 7 * 24 * time.Hour
	}
	if c.MaxWords == 0 {
		c.MaxWords = 2_000_000
	}
	c.Limits.defaults()
	return nil
}
