// Command occase is the realtime backend of a classifieds app: one binary,
// run as `occase serve --role=db|img|all`. main parses flags and the
// environment into a roles.Config, builds the logger, and exits once with
// the error that Run returns.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/occase/occase/bench"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/images"
	"github.com/occase/occase/logs"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// version names this build; the Dockerfile sets it with
// -ldflags "-X main.version=...". Empty: the module version Go recorded.
var version string

func main() {
	if err := app().Run(os.Args); err != nil {
		var logged loggedError
		if !errors.As(err, &logged) {
			fmt.Fprintln(os.Stderr, "occase:", err)
		}
		os.Exit(1)
	}
}

// loggedError is an error already written to the log (as a JSON line in
// JSON mode): main only exits with it.
type loggedError struct{ error }

// buildInfo is what `occase version`, the startup line and
// occase_build_info say about this binary.
func buildInfo() roles.BuildInfo {
	b := roles.BuildInfo{Version: version, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" {
			b.Version = bi.Main.Version
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && b.Revision != "" {
			b.Revision += "-dirty"
		}
	}
	if b.Version == "" {
		b.Version = "unknown"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

func (b buildInfoText) String() string {
	return fmt.Sprintf("occase %s (revision %s, %s)", b.Version, b.Revision, b.GoVersion)
}

type buildInfoText roles.BuildInfo

// fatalJSON writes err as one JSON log line, for startup errors in JSON
// mode that happen before (or instead of) the logger.
func fatalJSON(err error) {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), zapcore.DebugLevel)
	core.Write(zapcore.Entry{Level: zapcore.FatalLevel, Time: time.Now(), Message: "occase: " + err.Error()}, nil)
	core.Sync()
}

func env(name string) []string { return []string{"OCCASE_" + name} }

func app() *cli.App {
	d := roles.DefaultConfig()
	b := buildInfo()
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, buildInfoText(b)) }
	return oneLineUsage(&cli.App{
		Name:    "occase",
		Usage:   "realtime backend for classifieds apps: chat, live posts, presence and images",
		Version: b.Version,
		Commands: []*cli.Command{{
			Name:  "serve",
			Usage: "run a node (role db: the realtime engine; img: the image server; all: both)",
			Flags: append(serveFlags(d), pushFlags(d)...),
			Action: func(c *cli.Context) error {
				err := serve(c, d, b)
				if err != nil && c.String("log-format") == "json" {
					var logged loggedError
					if !errors.As(err, &logged) {
						fatalJSON(err)
					}
					return loggedError{err}
				}
				return err
			},
		}, {
			Name:  "version",
			Usage: "print the version, the VCS revision and the Go version of this build",
			Action: func(c *cli.Context) error {
				fmt.Fprintln(c.App.Writer, buildInfoText(b))
				return nil
			},
		}, {
			Name:      "probe",
			Usage:     "GET a URL and fail unless it answers 200 (the container HEALTHCHECK; distroless has no curl)",
			ArgsUsage: "URL",
			Action: func(c *cli.Context) error {
				return probe(c.Context, c.Args().First())
			},
		}, registerTokenCommand(), bench.Command(), pushCommand()},
	})
}

// oneLineUsage makes a mistyped flag or argument fail with one line on
// stderr (through main) instead of the command's whole help on stdout,
// where the error was the first of about 130 lines and easy to miss in a
// container's log.
func oneLineUsage(a *cli.App) *cli.App {
	usage := func(c *cli.Context, err error, _ bool) error {
		return fmt.Errorf("%w (see %s --help)", err, c.Command.HelpName)
	}
	var walk func([]*cli.Command)
	walk = func(cs []*cli.Command) {
		for _, c := range cs {
			if c.OnUsageError == nil {
				c.OnUsageError = usage
			}
			walk(c.Subcommands)
		}
	}
	a.OnUsageError = func(c *cli.Context, err error, _ bool) error {
		return fmt.Errorf("%w (see %s --help)", err, a.Name)
	}
	walk(a.Commands)
	return a
}

// registerTokenCommand prints a sign-up token for --register-key, so an
// operator can try a node that requires one (its sign-up service makes
// them the same way: docs/security.md).
func registerTokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "register-token",
		Usage: "print a signup_token for a node run with --register-key",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "register-key", EnvVars: env("REGISTER_KEY"), Usage: "the nodes' --register-key (hex)"},
			&cli.StringFlag{Name: "register-key-file", EnvVars: env("REGISTER_KEY_FILE"), Usage: "file holding --register-key"},
			&cli.DurationFlag{Name: "ttl", Value: time.Hour, Usage: "the token expires this long from now (at most 168h)"},
			&cli.StringFlag{Name: "subject", Usage: "your own reference of the verified user, carried in the token (optional)"},
		},
		Action: func(c *cli.Context) error {
			key, err := roles.LoadRegisterKey(c.String("register-key"), c.String("register-key-file"))
			if err != nil {
				return err
			}
			if key == nil {
				return errors.New("give --register-key or --register-key-file")
			}
			tok, err := roles.SignupToken(key, c.String("subject"), time.Now().Add(c.Duration("ttl")))
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, tok)
			return nil
		},
	}
}

func serve(c *cli.Context, d roles.Config, b roles.BuildInfo) error {
	cfg, err := configFrom(c, d)
	if err != nil {
		return err
	}
	cfg.Build = b
	log, limiter, err := newLogger(c.String("log-format"), c.String("log-level"), c.Int("log-per-second"))
	if err != nil {
		return err
	}
	defer log.Sync()
	defer limiter.Close()
	cfg.Collectors = append(cfg.Collectors, limiter.Metric())
	log.Info("starting", zap.String("version", b.Version), zap.String("revision", b.Revision),
		zap.String("go", b.GoVersion), zap.String("role", cfg.Role))
	if a := c.String("pprof-addr"); a != "" {
		stopPprof, err := servePprof(a, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := roles.New(ctx, cfg, log)
	if err == nil {
		err = srv.Run(ctx)
	}
	if err != nil && c.String("log-format") == "json" {
		// Through the logger, so that the line is JSON like the others
		// (and the limiter's pending summaries come first).
		log.Error("occase: " + err.Error())
		return loggedError{err}
	}
	return err
}

func probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

func serveFlags(d roles.Config) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "role", Value: d.Role, EnvVars: env("ROLE"), Usage: "db, img or all"},
		&cli.StringFlag{Name: "addr", Value: d.Addr, EnvVars: env("ADDR"), Usage: "listen address"},
		&cli.StringFlag{Name: "admin-addr", EnvVars: env("ADMIN_ADDR"), Usage: "separate listen address for /metrics and /healthz (default: /metrics on --addr)"},
		&cli.StringFlag{Name: "tls-cert", EnvVars: env("TLS_CERT"), Usage: "TLS certificate file (PEM); with --tls-key serves HTTPS/WSS on --addr"},
		&cli.StringFlag{Name: "tls-key", EnvVars: env("TLS_KEY"), Usage: "TLS private key file (PEM)"},
		&cli.StringSliceFlag{Name: "domain", EnvVars: env("DOMAIN"), Usage: "automatic TLS certificates (ACME) for these host names"},
		&cli.StringFlag{Name: "acme-cache", Value: d.ACMECache, EnvVars: env("ACME_CACHE"), Usage: "directory where automatic certificates are kept"},
		&cli.StringFlag{Name: "acme-http-addr", EnvVars: env("ACME_HTTP_ADDR"), Usage: "also answer ACME HTTP-01 challenges here (e.g. :80)"},
		&cli.StringFlag{Name: "log-format", Value: "console", EnvVars: env("LOG_FORMAT"), Usage: "console or json"},
		&cli.StringFlag{Name: "pprof-addr", Hidden: true, EnvVars: env("PPROF_ADDR"), Usage: "serve net/http/pprof on this loopback host:port, for profiling"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: env("LOG_LEVEL"), Usage: "debug, info, warn or error"},
		&cli.IntFlag{Name: "log-per-second", Value: 100, EnvVars: env("LOG_PER_SECOND"), Usage: "log lines written per second for each message; the rest are counted (occase_log_dropped_total) and reported in one line with \"dropped\": N (0: write every line)"},

		&cli.StringSliceFlag{Name: "redis", EnvVars: env("REDIS"), Usage: "Redis address(es) host:port; 'embedded' (or none, in role all only) runs the embedded in-process server"},
		&cli.StringFlag{Name: "embedded-snapshot", Value: "./data/embedded.json", EnvVars: env("EMBEDDED_SNAPSHOT"), Usage: "file that keeps the embedded server's data across restarts (written atomically every --embedded-snapshot-every and at shutdown; a crash loses what changed since); empty: memory only"},
		&cli.DurationFlag{Name: "embedded-snapshot-every", Value: 5 * time.Second, EnvVars: env("EMBEDDED_SNAPSHOT_EVERY"), Usage: "how often the embedded server's snapshot is written"},
		&cli.StringFlag{Name: "redis-user", EnvVars: env("REDIS_USER"), Usage: "Redis ACL user name (Redis 6+); empty: the default user"},
		&cli.StringFlag{Name: "redis-password", EnvVars: env("REDIS_PASSWORD"), Usage: "Redis password (AUTH); prefer --redis-password-file, which stays out of the process list and the environment"},
		&cli.StringFlag{Name: "redis-password-file", EnvVars: env("REDIS_PASSWORD_FILE"), Usage: "file holding the Redis password (trailing newline ignored)"},
		&cli.BoolFlag{Name: "redis-tls", EnvVars: env("REDIS_TLS"), Usage: "connect to Redis (and Sentinels) over TLS; implied by --redis-tls-ca or --redis-tls-cert"},
		&cli.StringFlag{Name: "redis-tls-ca", EnvVars: env("REDIS_TLS_CA"), Usage: "PEM file of the CA(s) that sign the Redis server certificate (default: the system roots)"},
		&cli.StringFlag{Name: "redis-tls-cert", EnvVars: env("REDIS_TLS_CERT"), Usage: "client certificate (PEM) for Redis servers that require one (tls-auth-clients yes); with --redis-tls-key"},
		&cli.StringFlag{Name: "redis-tls-key", EnvVars: env("REDIS_TLS_KEY"), Usage: "private key (PEM) of --redis-tls-cert"},
		&cli.StringFlag{Name: "redis-tls-server-name", EnvVars: env("REDIS_TLS_SERVER_NAME"), Usage: "name to verify the Redis certificate against (default: the host of each address)"},
		&cli.StringFlag{Name: "redis-prefix", Value: "occase:", EnvVars: env("REDIS_PREFIX"), Usage: "prefix of every key and channel"},
		&cli.DurationFlag{Name: "redis-flush-delay", Value: 20 * time.Microsecond, EnvVars: env("REDIS_FLUSH_DELAY"), Usage: "how long a Redis connection may wait after a write to gather more commands into the next (fewer system calls under load; adds at most this latency)"},
		&cli.DurationFlag{Name: "redis-timeout", Value: 5 * time.Second, EnvVars: env("REDIS_TIMEOUT"), Usage: "bound on every Redis command; requests fail with 'unavailable' after it"},
		&cli.BoolFlag{Name: "redis-cluster", EnvVars: env("REDIS_CLUSTER"), Usage: "require Redis Cluster at --redis (detected anyway; this fails instead of running on a lone Redis)"},
		&cli.StringSliceFlag{Name: "redis-sentinel", EnvVars: env("REDIS_SENTINEL"), Usage: "Sentinel address(es) host:port, instead of --redis; needs --redis-master"},
		&cli.StringFlag{Name: "redis-master", EnvVars: env("REDIS_MASTER"), Usage: "name of the master set the Sentinels watch"},
		&cli.StringFlag{Name: "redis-sentinel-password", EnvVars: env("REDIS_SENTINEL_PASSWORD")},
		&cli.IntFlag{Name: "redis-wait-replicas", EnvVars: env("REDIS_WAIT_REPLICAS"), Usage: "acknowledge a chat message only once this many replicas have it (survives a failover)"},
		&cli.StringFlag{Name: "secret", EnvVars: env("SECRET"), Usage: "32-byte key (64 hex chars) of the stored password digests; the same on every node"},
		&cli.StringFlag{Name: "secret-file", EnvVars: env("SECRET_FILE"), Usage: "file holding --secret"},

		&cli.DurationFlag{Name: "login-timeout", Value: d.LoginTimeout, EnvVars: env("LOGIN_TIMEOUT"), Usage: "close connections that have not logged in by then"},
		&cli.DurationFlag{Name: "idle-timeout", Value: d.IdleTimeout, EnvVars: env("IDLE_TIMEOUT"), Usage: "drop peers that answer no ping for this long"},
		&cli.DurationFlag{Name: "write-timeout", Value: d.WriteTimeout, EnvVars: env("WRITE_TIMEOUT"), Usage: "bound on writing one frame"},
		&cli.Int64Flag{Name: "max-frame", Value: d.MaxFrame, EnvVars: env("MAX_FRAME"), Usage: "largest frame in bytes (larger: close 1009)"},
		&cli.IntFlag{Name: "send-queue", Value: d.SendQueue, EnvVars: env("SEND_QUEUE"), Usage: "frames queued per connection before it is closed as a slow consumer"},
		&cli.DurationFlag{Name: "write-delay", Value: d.WriteDelay, EnvVars: env("WRITE_DELAY"), Usage: "how long a live post to an idle connection may wait for others to share its write(2): fewer system calls under fan-out, at most this much more latency for live posts (chat, presence and replies never wait; 0: none; at most 1s)"},
		&cli.IntFlag{Name: "write-batch", Value: d.WriteBatch, EnvVars: env("WRITE_BATCH"), Usage: "most queued frames a connection sends in one write(2) (1: each frame alone)"},
		&cli.IntFlag{Name: "send-queue-bytes", Value: d.SendQueueBytes, EnvVars: env("SEND_QUEUE_BYTES"), Usage: "bytes queued per connection before it is closed as a slow consumer"},
		&cli.DurationFlag{Name: "displace-timeout", Value: d.DisplaceTimeout, EnvVars: env("DISPLACE_TIMEOUT"), Usage: "how long a login waits for the user's older connection to let go"},
		&cli.DurationFlag{Name: "drain-timeout", Value: d.DrainTimeout, EnvVars: env("DRAIN_TIMEOUT"), Usage: "graceful shutdown budget"},
		&cli.DurationFlag{Name: "http-idle-timeout", Value: d.HTTPIdleTimeout, EnvVars: env("HTTP_IDLE_TIMEOUT"), Usage: "close keep-alive HTTP connections idle this long (every listener; WebSockets are not affected)"},
		&cli.StringSliceFlag{Name: "trusted-proxies", EnvVars: env("TRUSTED_PROXIES"), Usage: "load balancers (CIDRs or addresses) whose X-Forwarded-For is believed, so per-address limits count clients, not the balancer"},
		&cli.StringSliceFlag{Name: "allowed-origins", EnvVars: env("ALLOWED_ORIGINS"), Usage: "WebSocket Origin host patterns accepted besides same-origin (e.g. app.example.com, *)"},

		&cli.Int64Flag{Name: "chat-queue-cap", Value: d.Chat.QueueCap, EnvVars: env("CHAT_QUEUE_CAP"), Usage: "offline messages kept per user; a full queue refuses new ones (queue_full), never drops acknowledged ones"},
		&cli.Int64Flag{Name: "chat-queue-sender-share", Value: d.Chat.QueueSenderShare, EnvVars: env("CHAT_QUEUE_SENDER_SHARE"), Usage: "messages one sender may have in one recipient's queue (beyond: queue_full); 0: a quarter of --chat-queue-cap"},
		&cli.DurationFlag{Name: "chat-queue-ttl", Value: d.Chat.QueueTTL, EnvVars: env("CHAT_QUEUE_TTL"), Usage: "offline queue lifetime after the user's last login"},
		&cli.IntFlag{Name: "max-message", Value: d.Chat.MaxMessage, EnvVars: env("MAX_MESSAGE"), Usage: "largest chat or presence frame in bytes"},
		&cli.Float64Flag{Name: "chat-rate", Value: d.ChatRate, EnvVars: env("CHAT_RATE"), Usage: "chat messages per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "chat-burst", Value: d.ChatBurst, EnvVars: env("CHAT_BURST")},
		&cli.Float64Flag{Name: "presence-rate", Value: d.PresenceRate, EnvVars: env("PRESENCE_RATE"), Usage: "presence signals per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "presence-burst", Value: d.PresenceBurst, EnvVars: env("PRESENCE_BURST")},
		&cli.Float64Flag{Name: "register-rate", Value: d.RegisterRate, EnvVars: env("REGISTER_RATE"), Usage: "registrations per second per client address (0: unlimited)"},
		&cli.IntFlag{Name: "register-burst", Value: d.RegisterBurst, EnvVars: env("REGISTER_BURST")},
		&cli.Int64Flag{Name: "register-per-day", Value: d.RegisterPerDay, EnvVars: env("REGISTER_PER_DAY"), Usage: "accounts one client address (an IPv6 --ipv6-prefix network) may create per day, counted in Redis across nodes (0: unlimited)"},
		&cli.IntFlag{Name: "ipv6-prefix", Value: d.IPv6Prefix, EnvVars: env("IPV6_PREFIX"), Usage: "per-address limits count an IPv6 client by its network of this many bits (IPv4: each address)"},
		&cli.StringFlag{Name: "register-key", EnvVars: env("REGISTER_KEY"), Usage: "hex key (64 hex chars) of sign-up tokens: when set, register requires a signup_token from your sign-up service (see occase register-token)"},
		&cli.StringFlag{Name: "register-key-file", EnvVars: env("REGISTER_KEY_FILE"), Usage: "file holding --register-key"},
		&cli.DurationFlag{Name: "account-ttl", EnvVars: env("ACCOUNT_TTL"), Usage: "delete an account this long after its last login (0: never)"},
		&cli.Float64Flag{Name: "filenames-rate", Value: d.FilenamesRate, EnvVars: env("FILENAMES_RATE"), Usage: "filenames requests per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "filenames-burst", Value: d.FilenamesBurst, EnvVars: env("FILENAMES_BURST")},
		&cli.Float64Flag{Name: "read-rate-bytes", Value: d.ReadRateBytes, EnvVars: env("READ_RATE_BYTES"), Usage: "bytes per second one connection may send; over it the server stops reading it for a while (0: unlimited)"},
		&cli.IntFlag{Name: "read-burst-bytes", Value: d.ReadBurstBytes, EnvVars: env("READ_BURST_BYTES"), Usage: "bytes one connection may send at once above --read-rate-bytes (at least 1024)"},
		&cli.Float64Flag{Name: "read-rate-frames", Value: d.ReadRateFrames, EnvVars: env("READ_RATE_FRAMES"), Usage: "frames per second one connection may send; over it the server stops reading it for a while (0: unlimited)"},
		&cli.IntFlag{Name: "read-burst-frames", Value: d.ReadBurstFrames, EnvVars: env("READ_BURST_FRAMES"), Usage: "frames one connection may send at once above --read-rate-frames"},
		&cli.IntFlag{Name: "abuse-limit", Value: d.AbuseLimit, EnvVars: env("ABUSE_LIMIT"), Usage: "read pauses and rate-limit refusals one connection may cause within --abuse-window before it is closed with 4006 (0: never closed)"},
		&cli.DurationFlag{Name: "abuse-window", Value: d.AbuseWindow, EnvVars: env("ABUSE_WINDOW"), Usage: "the window of --abuse-limit"},

		&cli.StringFlag{Name: "menu", EnvVars: env("MENU"), Usage: "menu file (docs/menus.md); none: any well-formed code (the embedded broker uses the demo menu)"},
		&cli.IntFlag{Name: "location-depth", Value: d.Posts.LocationDepth, EnvVars: env("LOCATION_DEPTH"), Usage: "filter depth of location codes (1..4)"},
		&cli.IntFlag{Name: "product-depth", Value: d.Posts.ProductDepth, EnvVars: env("PRODUCT_DEPTH"), Usage: "filter depth of product codes (1..4)"},
		&cli.IntFlag{Name: "max-catchup", Value: d.Posts.MaxCatchUp, EnvVars: env("MAX_CATCHUP"), Usage: "posts sent after a subscribe_ack, at most"},
		&cli.IntFlag{Name: "post-quota-n", Value: d.Posts.QuotaN, EnvVars: env("POST_QUOTA_N"), Usage: "publishes allowed per user per --post-quota-period"},
		&cli.DurationFlag{Name: "post-quota-period", Value: d.Posts.QuotaPeriod, EnvVars: env("POST_QUOTA_PERIOD"), Usage: "sliding window of the publish quota"},
		&cli.DurationFlag{Name: "post-expiry", Value: d.Posts.Expiry, EnvVars: env("POST_EXPIRY"), Usage: "posts this old are removed and never returned"},
		&cli.IntFlag{Name: "max-body", Value: d.Posts.Limits.MaxBody, EnvVars: env("MAX_BODY"), Usage: "largest post body in bytes (as sent, JSON-escaped)"},
		&cli.IntFlag{Name: "max-sub-locations", Value: d.Posts.Limits.MaxLocations, EnvVars: env("MAX_SUB_LOCATIONS"), Usage: "location hashes in one subscription, at most"},
		&cli.IntFlag{Name: "max-sub-products", Value: d.Posts.Limits.MaxProducts, EnvVars: env("MAX_SUB_PRODUCTS"), Usage: "product hashes in one subscription, at most"},
		&cli.IntFlag{Name: "max-scan", Value: d.Posts.MaxScan, EnvVars: env("MAX_SCAN"), Usage: "posts one read (a catch-up, a GET /api/posts page or count) examines at most; a read that stops there answers a cursor to continue from"},
		&cli.Float64Flag{Name: "read-rate", Value: d.Posts.ReadRate, EnvVars: env("READ_RATE"), Usage: "GET /api/posts and /api/posts/{id} requests per second per client address (0: unlimited); over it: 429 rate_limited"},
		&cli.IntFlag{Name: "read-burst", Value: d.Posts.ReadBurst, EnvVars: env("READ_BURST")},
		&cli.Float64Flag{Name: "subscribe-rate", Value: d.Posts.SubscribeRate, EnvVars: env("SUBSCRIBE_RATE"), Usage: "subscribes per second per user (0: unlimited); over it: subscribe_ack fail rate_limited"},
		&cli.IntFlag{Name: "subscribe-burst", Value: d.Posts.SubscribeBurst, EnvVars: env("SUBSCRIBE_BURST")},
		&cli.Float64Flag{Name: "edit-rate", Value: d.Posts.EditRate, EnvVars: env("EDIT_RATE"), Usage: "update, set_status and renew commands per second per user (0: unlimited); over it: rate_limited"},
		&cli.IntFlag{Name: "edit-burst", Value: d.Posts.EditBurst, EnvVars: env("EDIT_BURST")},
		&cli.IntFlag{Name: "max-search-words", Value: d.Posts.MaxWords, EnvVars: env("MAX_SEARCH_WORDS"), Usage: "distinct words in a node's search index (0: no bound); words new to a full index are not indexed"},
		&cli.DurationFlag{Name: "renew-window", Value: d.Posts.RenewWindow, EnvVars: env("RENEW_WINDOW"), Usage: "how long before its expiry a post may be renewed"},
		&cli.IntFlag{Name: "max-posts", Value: d.Posts.MaxPosts, EnvVars: env("MAX_POSTS"), Usage: "live posts held, in Redis (publish refused posts_full) and in each node's index (0: no bound); about 1.7 KB of node RAM and 0.8 KB of Redis each"},
		&cli.Int64Flag{Name: "max-post-bytes", Value: d.Posts.MaxPostBytes, EnvVars: env("MAX_POST_BYTES"), Usage: "total bytes of the live posts' JSON, in Redis and in each node (0: no bound)"},
		&cli.IntFlag{Name: "posts-per-address", Value: d.Posts.PostsPerAddress, EnvVars: env("POSTS_PER_ADDRESS"), Usage: "publishes per client address per UTC day, all users together (0: unlimited); over it: quota_exceeded"},
		&cli.StringSliceFlag{Name: "cors-origins", Value: cli.NewStringSlice(d.Posts.CORSOrigins...), EnvVars: env("CORS_ORIGINS"), Usage: "web origins allowed to use the HTTP API (/api/...) and to upload and fetch images from a browser (e.g. https://app.example.com, or *)"},
		&cli.StringFlag{Name: "image-key", EnvVars: env("IMAGE_KEY"), Usage: "32-byte key of the upload names (64 hex chars, or 32 raw characters as in the original configs); the same on db and img nodes; role all without it uses a random key"},
		&cli.StringFlag{Name: "image-key-file", EnvVars: env("IMAGE_KEY_FILE"), Usage: "file holding --image-key"},
		&cli.StringFlag{Name: "image-dir", Value: d.ImageDir, EnvVars: env("IMAGE_DIR"), Usage: "storage root of uploaded images (roles img and all)"},
		&cli.Int64Flag{Name: "image-max-bytes", Value: d.Images.MaxBytes, EnvVars: env("IMAGE_MAX_BYTES"), Usage: "largest upload body in bytes (larger: 413)"},
		&cli.Int64Flag{Name: "image-max-pixels", Value: d.Images.MaxPixels, EnvVars: env("IMAGE_MAX_PIXELS"), Usage: "largest width*height accepted (larger: 413)"},
		&cli.DurationFlag{Name: "image-upload-timeout", Value: d.Images.UploadTimeout, EnvVars: env("IMAGE_UPLOAD_TIMEOUT"), Usage: "time allowed to receive one upload's body (slower: 408)"},
		&cli.IntFlag{Name: "image-max-uploads", Value: d.Images.MaxUploads, EnvVars: env("IMAGE_MAX_UPLOADS"), Usage: "uploads received and checked at once, each held in memory; others wait"},
		&cli.DurationFlag{Name: "image-name-ttl", Value: d.Images.NameTTL, EnvVars: env("IMAGE_NAME_TTL"), Usage: "time after issue (plus the rest of its issue day, UTC) an upload name may be used (later: 410)"},
		&cli.IntFlag{Name: "image-uploads-per-address", Value: d.Images.UploadsPerAddress, EnvVars: env("IMAGE_UPLOADS_PER_ADDRESS"), Usage: "uploads from one client address at once (more: 503 with Retry-After)"},
		&cli.DurationFlag{Name: "image-queue-wait", Value: d.Images.QueueWait, EnvVars: env("IMAGE_QUEUE_WAIT"), Usage: "longest an upload waits for a slot before 503 with Retry-After"},
		&cli.Int64Flag{Name: "image-min-upload-rate", Value: d.Images.MinRate, EnvVars: env("IMAGE_MIN_UPLOAD_RATE"), Usage: "slowest average upload in bytes/s after --image-upload-grace (slower: 408); 0 disables"},
		&cli.DurationFlag{Name: "image-upload-grace", Value: d.Images.UploadGrace, EnvVars: env("IMAGE_UPLOAD_GRACE"), Usage: "time an upload's body has before --image-min-upload-rate applies"},
	}
}

func configFrom(c *cli.Context, d roles.Config) (roles.Config, error) {
	cfg := d
	cfg.Role = c.String("role")
	cfg.Addr = c.String("addr")
	cfg.AdminAddr = c.String("admin-addr")
	cfg.TLSCert, cfg.TLSKey = c.String("tls-cert"), c.String("tls-key")
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	cfg.Domains = splitList(c.StringSlice("domain"))
	cfg.ACMECache = c.String("acme-cache")
	cfg.ACMEHTTPAddr = c.String("acme-http-addr")
	cfg.Redis = broker.Options{
		Addrs:      splitList(c.StringSlice("redis")),
		Username:   c.String("redis-user"),
		Password:   c.String("redis-password"),
		Prefix:     c.String("redis-prefix"),
		Timeout:    c.Duration("redis-timeout"),
		FlushDelay: c.Duration("redis-flush-delay"),

		Cluster:          c.Bool("redis-cluster"),
		Sentinels:        splitList(c.StringSlice("redis-sentinel")),
		MasterName:       c.String("redis-master"),
		SentinelPassword: c.String("redis-sentinel-password"),
		WaitReplicas:     c.Int("redis-wait-replicas"),

		SnapshotPath:  c.String("embedded-snapshot"),
		SnapshotEvery: c.Duration("embedded-snapshot-every"),
	}
	if f := c.String("redis-password-file"); f != "" {
		if c.String("redis-password") != "" {
			return cfg, fmt.Errorf("give --redis-password or --redis-password-file, not both")
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return cfg, fmt.Errorf("read --redis-password-file: %w", err)
		}
		cfg.Redis.Password = strings.TrimRight(string(b), "\r\n")
	}
	if c.Bool("redis-tls") || c.String("redis-tls-ca") != "" || c.String("redis-tls-cert") != "" || c.String("redis-tls-key") != "" {
		tc, err := broker.TLSConfig(broker.TLSFiles{
			CA: c.String("redis-tls-ca"), Cert: c.String("redis-tls-cert"), Key: c.String("redis-tls-key"),
			ServerName: c.String("redis-tls-server-name"),
		})
		if err != nil {
			return cfg, err
		}
		cfg.Redis.TLS = tc
	}
	secret := c.String("secret")
	if f := c.String("secret-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return cfg, fmt.Errorf("read --secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if secret != "" {
		k, err := hex.DecodeString(secret)
		if err != nil || len(k) != 32 {
			return cfg, fmt.Errorf("--secret must be 64 hex characters (32 bytes)")
		}
		cfg.Secret = k
	}
	cfg.LoginTimeout = c.Duration("login-timeout")
	cfg.IdleTimeout = c.Duration("idle-timeout")
	cfg.WriteTimeout = c.Duration("write-timeout")
	cfg.MaxFrame = c.Int64("max-frame")
	cfg.SendQueue = c.Int("send-queue")
	cfg.SendQueueBytes = c.Int("send-queue-bytes")
	cfg.WriteBatch = c.Int("write-batch")
	cfg.WriteDelay = c.Duration("write-delay")
	cfg.DisplaceTimeout = c.Duration("displace-timeout")
	cfg.DrainTimeout = c.Duration("drain-timeout")
	cfg.HTTPIdleTimeout = c.Duration("http-idle-timeout")
	cfg.AllowedOrigins = splitList(c.StringSlice("allowed-origins"))
	for _, p := range splitList(c.StringSlice("trusted-proxies")) {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return cfg, fmt.Errorf("--trusted-proxies: %q is neither a CIDR nor an address", p)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, pfx)
	}
	cfg.Chat.QueueCap = c.Int64("chat-queue-cap")
	cfg.Chat.QueueTTL = c.Duration("chat-queue-ttl")
	cfg.Chat.QueueSenderShare = c.Int64("chat-queue-sender-share")
	cfg.Chat.MaxMessage = c.Int("max-message")
	cfg.ChatRate, cfg.ChatBurst = c.Float64("chat-rate"), c.Int("chat-burst")
	cfg.PresenceRate, cfg.PresenceBurst = c.Float64("presence-rate"), c.Int("presence-burst")
	cfg.RegisterRate, cfg.RegisterBurst = c.Float64("register-rate"), c.Int("register-burst")
	cfg.RegisterPerDay, cfg.IPv6Prefix = c.Int64("register-per-day"), c.Int("ipv6-prefix")
	rk, err := roles.LoadRegisterKey(c.String("register-key"), c.String("register-key-file"))
	if err != nil {
		return cfg, err
	}
	cfg.RegisterKey = rk
	if cfg.Redis.AccountTTL = c.Duration("account-ttl"); cfg.Redis.AccountTTL < 0 {
		return cfg, fmt.Errorf("--account-ttl must not be negative")
	}
	cfg.FilenamesRate, cfg.FilenamesBurst = c.Float64("filenames-rate"), c.Int("filenames-burst")
	cfg.ReadRateBytes, cfg.ReadBurstBytes = c.Float64("read-rate-bytes"), c.Int("read-burst-bytes")
	cfg.ReadRateFrames, cfg.ReadBurstFrames = c.Float64("read-rate-frames"), c.Int("read-burst-frames")
	cfg.AbuseLimit, cfg.AbuseWindow = c.Int("abuse-limit"), c.Duration("abuse-window")
	if f := c.String("menu"); f != "" {
		m, err := posts.LoadMenu(f)
		if err != nil {
			return cfg, fmt.Errorf("--menu: %w", err)
		}
		cfg.Posts.Menu = m
	}
	cfg.Posts.LocationDepth, cfg.Posts.ProductDepth = c.Int("location-depth"), c.Int("product-depth")
	cfg.Posts.MaxCatchUp = c.Int("max-catchup")
	cfg.Posts.QuotaN, cfg.Posts.QuotaPeriod = c.Int("post-quota-n"), c.Duration("post-quota-period")
	cfg.Posts.Expiry = c.Duration("post-expiry")
	cfg.Posts.Limits.MaxBody = c.Int("max-body")
	cfg.Posts.Limits.MaxLocations = c.Int("max-sub-locations")
	cfg.Posts.Limits.MaxProducts = c.Int("max-sub-products")
	// 0 on the command line means "no limit"; in posts.Config it means
	// "the default" and a negative value turns the limit off.
	off := func(v float64) float64 {
		if v == 0 {
			return -1
		}
		return v
	}
	cfg.Posts.MaxScan = c.Int("max-scan")
	cfg.Posts.ReadRate, cfg.Posts.ReadBurst = off(c.Float64("read-rate")), c.Int("read-burst")
	cfg.Posts.SubscribeRate, cfg.Posts.SubscribeBurst = off(c.Float64("subscribe-rate")), c.Int("subscribe-burst")
	cfg.Posts.EditRate, cfg.Posts.EditBurst = off(c.Float64("edit-rate")), c.Int("edit-burst")
	cfg.Posts.RenewWindow = c.Duration("renew-window")
	cfg.Posts.MaxWords = int(off(float64(c.Int("max-search-words"))))
	cfg.Posts.MaxPosts = int(off(float64(c.Int("max-posts"))))
	cfg.Posts.MaxPostBytes = int64(off(float64(c.Int64("max-post-bytes"))))
	cfg.Posts.PostsPerAddress = int(off(float64(c.Int("posts-per-address"))))
	cfg.Posts.CORSOrigins = splitList(c.StringSlice("cors-origins"))
	key, err := images.LoadKey(c.String("image-key"), c.String("image-key-file"))
	switch {
	case errors.Is(err, images.ErrNoKey): // roles decides what a missing key means
	case err != nil:
		return cfg, fmt.Errorf("--image-key: %w", err)
	default:
		cfg.ImageKey = key
	}
	cfg.ImageDir = c.String("image-dir")
	cfg.Images.MaxBytes = c.Int64("image-max-bytes")
	cfg.Images.MaxPixels = c.Int64("image-max-pixels")
	cfg.Images.UploadTimeout = c.Duration("image-upload-timeout")
	cfg.Images.MaxUploads = c.Int("image-max-uploads")
	cfg.Images.NameTTL = c.Duration("image-name-ttl")
	cfg.Images.UploadsPerAddress = c.Int("image-uploads-per-address")
	cfg.Images.QueueWait = c.Duration("image-queue-wait")
	cfg.Images.MinRate = c.Int64("image-min-upload-rate")
	if cfg.Images.MinRate == 0 {
		cfg.Images.MinRate = -1 // images: negative is off, zero the default
	}
	cfg.Images.UploadGrace = c.Duration("image-upload-grace")
	cfg.Images.CORSOrigins = cfg.Posts.CORSOrigins
	if err := pushConfigFrom(c, &cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// splitList accepts both repeated flags and comma-separated values.
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// newLogger builds the logger on a logs.Limiter instead of zap's sampler,
// which dropped lines without saying so: at most perSecond lines of each
// message a second, and a line with the count of the others.
func newLogger(format, level string, perSecond int) (*zap.Logger, *logs.Limiter, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	if perSecond < 0 {
		return nil, nil, fmt.Errorf("--log-per-second must be 0 or more, got %d", perSecond)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	default:
		return nil, nil, fmt.Errorf("--log-format must be console or json, got %q", format)
	}
	cfg.Sampling = nil
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	var lim *logs.Limiter
	log, err := cfg.Build(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		lim = logs.New(c, logs.Options{PerSecond: perSecond})
		return lim.Core()
	}))
	if err != nil {
		return nil, nil, err
	}
	return log, lim, nil
}

// servePprof serves the runtime profiles on their own loopback listener,
// apart from the public one, so that profiling a node under load (the
// benchmark report's CPU profile) needs no rebuild and exposes nothing.
func servePprof(addr string, log *zap.Logger) (stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return nil, fmt.Errorf("--pprof-addr must be a loopback host:port, got %q", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(l)
	log.Info("pprof", zap.String("addr", l.Addr().String()))
	return func() { hs.Close() }, nil
}
