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
	"strings"
	"syscall"
	"time"

	"github.com/occase/occase/bench"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/images"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	if err := app().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "occase:", err)
		os.Exit(1)
	}
}

func env(name string) []string { return []string{"OCCASE_" + name} }

func app() *cli.App {
	d := roles.DefaultConfig()
	return &cli.App{
		Name:  "occase",
		Usage: "realtime backend for classifieds apps: chat, live posts, presence and images",
		Commands: []*cli.Command{{
			Name:  "serve",
			Usage: "run a node (role db: the realtime engine; img: the image server; all: both)",
			Flags: serveFlags(d),
			Action: func(c *cli.Context) error {
				cfg, err := configFrom(c, d)
				if err != nil {
					return err
				}
				log, err := newLogger(c.String("log-format"), c.String("log-level"))
				if err != nil {
					return err
				}
				defer log.Sync()
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
				if err != nil {
					return err
				}
				return srv.Run(ctx)
			},
		}, {
			Name:      "probe",
			Usage:     "GET a URL and fail unless it answers 200 (the container HEALTHCHECK; distroless has no curl)",
			ArgsUsage: "URL",
			Action: func(c *cli.Context) error {
				return probe(c.Context, c.Args().First())
			},
		}, bench.Command()},
	}
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

		&cli.StringSliceFlag{Name: "redis", EnvVars: env("REDIS"), Usage: "Redis address(es) host:port; 'embedded' (or none, in role all only) runs the embedded in-process server"},
		&cli.StringFlag{Name: "embedded-snapshot", Value: "./data/embedded.json", EnvVars: env("EMBEDDED_SNAPSHOT"), Usage: "file that keeps the embedded server's data across restarts (written atomically every --embedded-snapshot-every and at shutdown; a crash loses what changed since); empty: memory only"},
		&cli.DurationFlag{Name: "embedded-snapshot-every", Value: 5 * time.Second, EnvVars: env("EMBEDDED_SNAPSHOT_EVERY"), Usage: "how often the embedded server's snapshot is written"},
		&cli.StringFlag{Name: "redis-user", EnvVars: env("REDIS_USER")},
		&cli.StringFlag{Name: "redis-password", EnvVars: env("REDIS_PASSWORD")},
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

		&cli.Int64Flag{Name: "chat-queue-cap", Value: d.Chat.QueueCap, EnvVars: env("CHAT_QUEUE_CAP"), Usage: "offline messages kept per user (oldest dropped)"},
		&cli.DurationFlag{Name: "chat-queue-ttl", Value: d.Chat.QueueTTL, EnvVars: env("CHAT_QUEUE_TTL"), Usage: "offline queue lifetime after the user's last login"},
		&cli.IntFlag{Name: "max-message", Value: d.Chat.MaxMessage, EnvVars: env("MAX_MESSAGE"), Usage: "largest chat or presence frame in bytes"},
		&cli.Float64Flag{Name: "chat-rate", Value: d.ChatRate, EnvVars: env("CHAT_RATE"), Usage: "chat messages per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "chat-burst", Value: d.ChatBurst, EnvVars: env("CHAT_BURST")},
		&cli.Float64Flag{Name: "presence-rate", Value: d.PresenceRate, EnvVars: env("PRESENCE_RATE"), Usage: "presence signals per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "presence-burst", Value: d.PresenceBurst, EnvVars: env("PRESENCE_BURST")},
		&cli.Float64Flag{Name: "register-rate", Value: d.RegisterRate, EnvVars: env("REGISTER_RATE"), Usage: "registrations per second per client address (0: unlimited)"},
		&cli.IntFlag{Name: "register-burst", Value: d.RegisterBurst, EnvVars: env("REGISTER_BURST")},
		&cli.Float64Flag{Name: "filenames-rate", Value: d.FilenamesRate, EnvVars: env("FILENAMES_RATE"), Usage: "filenames requests per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "filenames-burst", Value: d.FilenamesBurst, EnvVars: env("FILENAMES_BURST")},

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
		&cli.StringSliceFlag{Name: "cors-origins", Value: cli.NewStringSlice(d.Posts.CORSOrigins...), EnvVars: env("CORS_ORIGINS"), Usage: "web origins allowed to use the HTTP API (/api/...) and to upload and fetch images from a browser (e.g. https://app.example.com, or *)"},
		&cli.StringFlag{Name: "image-key", EnvVars: env("IMAGE_KEY"), Usage: "32-byte key of the upload names (64 hex chars, or 32 raw characters as in the original configs); the same on db and img nodes; role all without it uses a random key"},
		&cli.StringFlag{Name: "image-key-file", EnvVars: env("IMAGE_KEY_FILE"), Usage: "file holding --image-key"},
		&cli.StringFlag{Name: "image-dir", Value: d.ImageDir, EnvVars: env("IMAGE_DIR"), Usage: "storage root of uploaded images (roles img and all)"},
		&cli.Int64Flag{Name: "image-max-bytes", Value: d.Images.MaxBytes, EnvVars: env("IMAGE_MAX_BYTES"), Usage: "largest upload body in bytes (larger: 413)"},
		&cli.Int64Flag{Name: "image-max-pixels", Value: d.Images.MaxPixels, EnvVars: env("IMAGE_MAX_PIXELS"), Usage: "largest width*height accepted (larger: 413)"},
		&cli.DurationFlag{Name: "image-upload-timeout", Value: d.Images.UploadTimeout, EnvVars: env("IMAGE_UPLOAD_TIMEOUT"), Usage: "time allowed to receive one upload's body (slower: 408)"},
		&cli.IntFlag{Name: "image-max-uploads", Value: d.Images.MaxUploads, EnvVars: env("IMAGE_MAX_UPLOADS"), Usage: "uploads received and checked at once, each held in memory; others wait"},
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
	cfg.Chat.MaxMessage = c.Int("max-message")
	cfg.ChatRate, cfg.ChatBurst = c.Float64("chat-rate"), c.Int("chat-burst")
	cfg.PresenceRate, cfg.PresenceBurst = c.Float64("presence-rate"), c.Int("presence-burst")
	cfg.RegisterRate, cfg.RegisterBurst = c.Float64("register-rate"), c.Int("register-burst")
	cfg.FilenamesRate, cfg.FilenamesBurst = c.Float64("filenames-rate"), c.Int("filenames-burst")
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
	cfg.Images.CORSOrigins = cfg.Posts.CORSOrigins
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

func newLogger(format, level string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("--log-format must be console or json, got %q", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
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
