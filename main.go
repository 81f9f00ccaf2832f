// Command occase is the realtime backend of a classifieds app: one binary,
// run as `occase serve --role=db|img|all`. main parses flags and the
// environment into a roles.Config, builds the logger, and exits once with
// the error that Run returns.
package main

import (
	"cmp"
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/occase/occase/bench"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/images"
	"github.com/occase/occase/logs"
	"github.com/occase/occase/moderation"
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

// serveDefaults is roles.DefaultConfig plus the defaults only the command
// line has: roles takes broker.Options as given, so the Redis key prefix,
// timings and the embedded server's snapshot file are chosen here.
func serveDefaults() roles.Config {
	d := roles.DefaultConfig()
	d.Redis.Prefix = "occase:"
	d.Redis.Timeout = 5 * time.Second
	d.Redis.FlushDelay = 20 * time.Microsecond
	d.Redis.SnapshotPath = "./data/embedded.json"
	d.Redis.SnapshotEvery = 5 * time.Second
	return d
}

func app() *cli.App {
	d := serveDefaults()
	b := buildInfo()
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, buildInfoText(b)) }
	return oneLineUsage(&cli.App{
		Name:    "occase",
		Usage:   "realtime backend for classifieds apps: chat, live posts, presence and images",
		Version: b.Version,
		Commands: []*cli.Command{{
			Name:  "serve",
			Usage: "run a node (role db: the realtime engine; img: the image server; all: both)",
			Flags: append(append(serveFlags(&d), pushFlags(&d)...), imageLifecycleFlags(&d)...),
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
		}, registerTokenCommand(), bench.Command(), pushCommand(), imagesCommand(), moderateCommand()},
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
			if ttl := c.Duration("ttl"); ttl <= 0 || ttl > roles.MaxSignupTokenLife {
				// A node answers such a token bad_token: say so here.
				return fmt.Errorf("--ttl %v: want more than 0 and at most %v (nodes refuse a token that expires later)", ttl, roles.MaxSignupTokenLife)
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
	if c.NArg() > 0 {
		// "--redis= redis:6379" or a value after a boolean flag: the value
		// would otherwise be dropped without a word.
		return fmt.Errorf("serve takes no arguments, got %q (give values as --flag value or --flag=value)", c.Args().First())
	}
	cfg, err := configFrom(c, d)
	if err != nil {
		return err
	}
	cfg.Build = b
	if f := c.String("admin-token-file"); f != "" {
		if cfg.AdminAddr == "" {
			return errors.New("--admin-token-file needs --admin-addr: the moderation API is served on the admin listener only, never on the public one")
		}
		if cfg.AdminTokens, err = moderation.LoadTokens(f); err != nil {
			return err
		}
	}
	if u := c.String("public-url"); u != "" {
		if _, _, err := moderation.ParsePublicURL(u); err != nil {
			return err
		}
		cfg.PublicURL = u
	}
	if err := cfg.Check(); err != nil {
		return err
	}
	log, limiter, err := newLogger(cmp.Or(c.String("log-format"), "console"), cmp.Or(c.String("log-level"), "info"), c.Int("log-per-second"))
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
		if f := c.String("admin-token-file"); f != "" {
			stopReload := reloadTokensOnHUP(ctx, f, srv, log)
			defer stopReload()
		}
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

// reloadTokensOnHUP reads the token file again on each SIGHUP and hands
// it to the moderation API, so that an operator's access is revoked (or
// added) without a restart; a file it refuses keeps the tokens in use.
// The returned func stops it.
func reloadTokensOnHUP(ctx context.Context, path string, srv *roles.Server, log *zap.Logger) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			ops, err := moderation.LoadTokens(path)
			if err == nil {
				err = srv.SetAdminTokens(ops)
			}
			if err != nil {
				log.Error("SIGHUP: the admin tokens were not reloaded; the ones in use stay", zap.Error(err))
				continue
			}
			names := make([]string, len(ops))
			for i, o := range ops {
				names[i] = o.Name
			}
			log.Info("SIGHUP: admin tokens reloaded", zap.Strings("operators", names))
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

func probe(ctx context.Context, url string) error {
	if url == "" {
		return errors.New("probe needs a URL, e.g. occase probe http://127.0.0.1:8080/healthz")
	}
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

// serveFlags binds each option to the field of cfg it sets (Destination),
// with the field's value in cfg as its default: adding an option is one
// line here. Options that need converting are read by configFrom.
func serveFlags(cfg *roles.Config) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "role", Value: cfg.Role, Destination: &cfg.Role, EnvVars: env("ROLE"), Usage: "db, img or all"},
		&cli.StringFlag{Name: "addr", Value: cfg.Addr, Destination: &cfg.Addr, EnvVars: env("ADDR"), Usage: "listen address"},
		&cli.StringFlag{Name: "admin-addr", Value: cfg.AdminAddr, Destination: &cfg.AdminAddr, EnvVars: env("ADMIN_ADDR"), Usage: "separate listen address for /metrics and /healthz (default: /metrics on --addr)"},
		&cli.IntFlag{Name: "admin-max-conns", Value: cfg.AdminMaxConns, Destination: &cfg.AdminMaxConns, EnvVars: env("ADMIN_MAX_CONNS"), Usage: "connections open at once on --admin-addr; half of them at most without a valid moderator's token yet (a viewer's counts there too; each of those closed after its answer); past either bound a new connection is answered 503 and closed"},
		&cli.StringFlag{Name: "public-url", EnvVars: env("PUBLIC_URL"), Usage: "the address users open, e.g. https://market.example.com (absolute http or https, no query or fragment): the moderation page shows reported posts' photos from there and links to the listings; without it, no photos"},
		&cli.StringFlag{Name: "admin-token-file", EnvVars: env("ADMIN_TOKEN_FILE"), Usage: "file holding the operators' tokens, one 'name token [moderator|viewer]' line each (tokens at least 32 bytes, e.g. openssl rand -hex 32; a viewer reads but may not act): serves the moderation API and page under /admin/ on --admin-addr (docs/operations.md \"The moderation API\"); without it they are off"},
		&cli.StringFlag{Name: "tls-cert", Value: cfg.TLSCert, Destination: &cfg.TLSCert, EnvVars: env("TLS_CERT"), Usage: "TLS certificate file (PEM); with --tls-key serves HTTPS/WSS on --addr"},
		&cli.StringFlag{Name: "tls-key", Value: cfg.TLSKey, Destination: &cfg.TLSKey, EnvVars: env("TLS_KEY"), Usage: "TLS private key file (PEM)"},
		&cli.StringSliceFlag{Name: "domain", EnvVars: env("DOMAIN"), Usage: "automatic TLS certificates (ACME) for these host names"},
		&cli.StringFlag{Name: "acme-cache", Value: cfg.ACMECache, Destination: &cfg.ACMECache, EnvVars: env("ACME_CACHE"), Usage: "directory where automatic certificates are kept"},
		&cli.StringFlag{Name: "acme-http-addr", Value: cfg.ACMEHTTPAddr, Destination: &cfg.ACMEHTTPAddr, EnvVars: env("ACME_HTTP_ADDR"), Usage: "also answer ACME HTTP-01 challenges here (e.g. :80)"},
		&cli.StringFlag{Name: "log-format", Value: "console", EnvVars: env("LOG_FORMAT"), Usage: "console or json"},
		&cli.StringFlag{Name: "pprof-addr", Hidden: true, EnvVars: env("PPROF_ADDR"), Usage: "serve net/http/pprof on this loopback host:port, for profiling"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: env("LOG_LEVEL"), Usage: "debug, info, warn or error"},
		&cli.IntFlag{Name: "log-per-second", Value: 100, EnvVars: env("LOG_PER_SECOND"), Usage: "log lines written per second for each message; the rest are counted (occase_log_dropped_total) and reported in one line with \"dropped\": N (0: write every line)"},

		&cli.StringSliceFlag{Name: "redis", EnvVars: env("REDIS"), Usage: "Redis address(es) host:port; 'embedded' (or none, in role all only) runs the embedded in-process server"},
		&cli.StringFlag{Name: "embedded-snapshot", Value: cfg.Redis.SnapshotPath, Destination: &cfg.Redis.SnapshotPath, EnvVars: env("EMBEDDED_SNAPSHOT"), Usage: "file that keeps the embedded server's data across restarts (written atomically every --embedded-snapshot-every and at shutdown; a crash loses what changed since); empty: memory only"},
		&cli.DurationFlag{Name: "embedded-snapshot-every", Value: cfg.Redis.SnapshotEvery, Destination: &cfg.Redis.SnapshotEvery, EnvVars: env("EMBEDDED_SNAPSHOT_EVERY"), Usage: "how often the embedded server's snapshot is written"},
		&cli.StringFlag{Name: "redis-user", Value: cfg.Redis.Username, Destination: &cfg.Redis.Username, EnvVars: env("REDIS_USER"), Usage: "Redis ACL user name (Redis 6+); empty: the default user"},
		&cli.StringFlag{Name: "redis-password", Value: cfg.Redis.Password, Destination: &cfg.Redis.Password, EnvVars: env("REDIS_PASSWORD"), Usage: "Redis password (AUTH); prefer --redis-password-file, which stays out of the process list and the environment"},
		&cli.StringFlag{Name: "redis-password-file", EnvVars: env("REDIS_PASSWORD_FILE"), Usage: "file holding the Redis password (trailing newline ignored)"},
		&cli.BoolFlag{Name: "redis-tls", EnvVars: env("REDIS_TLS"), Usage: "connect to Redis (and Sentinels) over TLS; implied by --redis-tls-ca or --redis-tls-cert"},
		&cli.StringFlag{Name: "redis-tls-ca", EnvVars: env("REDIS_TLS_CA"), Usage: "PEM file of the CA(s) that sign the Redis server certificate (default: the system roots)"},
		&cli.StringFlag{Name: "redis-tls-cert", EnvVars: env("REDIS_TLS_CERT"), Usage: "client certificate (PEM) for Redis servers that require one (tls-auth-clients yes); with --redis-tls-key"},
		&cli.StringFlag{Name: "redis-tls-key", EnvVars: env("REDIS_TLS_KEY"), Usage: "private key (PEM) of --redis-tls-cert"},
		&cli.StringFlag{Name: "redis-tls-server-name", EnvVars: env("REDIS_TLS_SERVER_NAME"), Usage: "name to verify the Redis certificate against (default: the host of each address)"},
		&cli.StringFlag{Name: "redis-prefix", Value: cfg.Redis.Prefix, Destination: &cfg.Redis.Prefix, EnvVars: env("REDIS_PREFIX"), Usage: "prefix of every key and channel"},
		&cli.DurationFlag{Name: "redis-flush-delay", Value: cfg.Redis.FlushDelay, Destination: &cfg.Redis.FlushDelay, EnvVars: env("REDIS_FLUSH_DELAY"), Usage: "how long a Redis connection may wait after a write to gather more commands into the next (fewer system calls under load; adds at most this latency)"},
		&cli.DurationFlag{Name: "redis-timeout", Value: cfg.Redis.Timeout, Destination: &cfg.Redis.Timeout, EnvVars: env("REDIS_TIMEOUT"), Usage: "bound on every Redis command; requests fail with 'unavailable' after it"},
		&cli.BoolFlag{Name: "redis-cluster", Value: cfg.Redis.Cluster, Destination: &cfg.Redis.Cluster, EnvVars: env("REDIS_CLUSTER"), Usage: "require Redis Cluster at --redis (detected anyway; this fails instead of running on a lone Redis)"},
		&cli.StringSliceFlag{Name: "redis-sentinel", EnvVars: env("REDIS_SENTINEL"), Usage: "Sentinel address(es) host:port, instead of --redis; needs --redis-master"},
		&cli.StringFlag{Name: "redis-master", Value: cfg.Redis.MasterName, Destination: &cfg.Redis.MasterName, EnvVars: env("REDIS_MASTER"), Usage: "name of the master set the Sentinels watch"},
		&cli.StringFlag{Name: "redis-sentinel-password", Value: cfg.Redis.SentinelPassword, Destination: &cfg.Redis.SentinelPassword, EnvVars: env("REDIS_SENTINEL_PASSWORD"), Usage: "password of the Sentinels (their requirepass), if they have one"},
		&cli.IntFlag{Name: "redis-wait-replicas", Value: cfg.Redis.WaitReplicas, Destination: &cfg.Redis.WaitReplicas, EnvVars: env("REDIS_WAIT_REPLICAS"), Usage: "acknowledge a chat message only once this many replicas have it (survives a failover)"},
		&cli.StringFlag{Name: "secret", EnvVars: env("SECRET"), Usage: "32-byte key (64 hex chars) of the stored password digests; the same on every node"},
		&cli.StringFlag{Name: "secret-file", EnvVars: env("SECRET_FILE"), Usage: "file holding --secret"},

		&cli.DurationFlag{Name: "login-timeout", Value: cfg.LoginTimeout, Destination: &cfg.LoginTimeout, EnvVars: env("LOGIN_TIMEOUT"), Usage: "close connections that have not logged in by then"},
		&cli.DurationFlag{Name: "idle-timeout", Value: cfg.IdleTimeout, Destination: &cfg.IdleTimeout, EnvVars: env("IDLE_TIMEOUT"), Usage: "drop peers that answer no ping for this long"},
		&cli.IntFlag{Name: "quiet-gc-percent", Value: cfg.QuietGCPercent, Destination: &cfg.QuietGCPercent, EnvVars: env("QUIET_GC_PERCENT"), Usage: "GOGC while the node allocates little against its live heap (idle connections): the memory the collector kept as headroom goes back to the system; GOGC is 100 again as soon as it is busy (0: never change GOGC; GOGC or GOMEMLIMIT in the environment also turn this off)"},
		&cli.DurationFlag{Name: "write-timeout", Value: cfg.WriteTimeout, Destination: &cfg.WriteTimeout, EnvVars: env("WRITE_TIMEOUT"), Usage: "bound on writing one frame"},
		&cli.Int64Flag{Name: "max-frame", Value: cfg.MaxFrame, Destination: &cfg.MaxFrame, EnvVars: env("MAX_FRAME"), Usage: "largest frame in bytes, at least 1024 (larger: close 1009)"},
		&cli.IntFlag{Name: "send-queue", Value: cfg.SendQueue, Destination: &cfg.SendQueue, EnvVars: env("SEND_QUEUE"), Usage: "frames queued per connection before it is closed as a slow consumer"},
		&cli.DurationFlag{Name: "write-delay", Value: cfg.WriteDelay, Destination: &cfg.WriteDelay, EnvVars: env("WRITE_DELAY"), Usage: "how long a live post to an idle connection may wait for others to share its write(2): fewer system calls under fan-out, at most this much more latency for live posts (chat, presence and replies never wait; 0: none; at most 1s)"},
		&cli.IntFlag{Name: "write-batch", Value: cfg.WriteBatch, Destination: &cfg.WriteBatch, EnvVars: env("WRITE_BATCH"), Usage: "most queued frames a connection sends in one write(2) (1: each frame alone)"},
		&cli.IntFlag{Name: "send-queue-bytes", Value: cfg.SendQueueBytes, Destination: &cfg.SendQueueBytes, EnvVars: env("SEND_QUEUE_BYTES"), Usage: "bytes queued per connection before it is closed as a slow consumer"},
		&cli.DurationFlag{Name: "displace-timeout", Value: cfg.DisplaceTimeout, Destination: &cfg.DisplaceTimeout, EnvVars: env("DISPLACE_TIMEOUT"), Usage: "how long a login waits for the user's older connection to let go"},
		&cli.DurationFlag{Name: "drain-timeout", Value: cfg.DrainTimeout, Destination: &cfg.DrainTimeout, EnvVars: env("DRAIN_TIMEOUT"), Usage: "graceful shutdown budget"},
		&cli.DurationFlag{Name: "http-idle-timeout", Value: cfg.HTTPIdleTimeout, Destination: &cfg.HTTPIdleTimeout, EnvVars: env("HTTP_IDLE_TIMEOUT"), Usage: "close keep-alive HTTP connections idle this long (every listener; WebSockets are not affected)"},
		&cli.StringSliceFlag{Name: "trusted-proxies", EnvVars: env("TRUSTED_PROXIES"), Usage: "load balancers (CIDRs or addresses) whose X-Forwarded-For is believed, so per-address limits count clients, not the balancer"},
		&cli.StringSliceFlag{Name: "allowed-origins", EnvVars: env("ALLOWED_ORIGINS"), Usage: "WebSocket Origin host patterns accepted besides same-origin (e.g. app.example.com, *)"},

		&cli.Int64Flag{Name: "chat-queue-cap", Value: cfg.Chat.QueueCap, Destination: &cfg.Chat.QueueCap, EnvVars: env("CHAT_QUEUE_CAP"), Usage: "offline messages kept per user; a full queue refuses new ones (queue_full), never drops acknowledged ones"},
		&cli.Int64Flag{Name: "chat-queue-sender-share", Value: cfg.Chat.QueueSenderShare, Destination: &cfg.Chat.QueueSenderShare, EnvVars: env("CHAT_QUEUE_SENDER_SHARE"), Usage: "messages one sender may have in one recipient's queue (beyond: queue_full); 0: a quarter of --chat-queue-cap"},
		&cli.DurationFlag{Name: "chat-queue-ttl", Value: cfg.Chat.QueueTTL, Destination: &cfg.Chat.QueueTTL, EnvVars: env("CHAT_QUEUE_TTL"), Usage: "offline queue lifetime after the user's last login"},
		&cli.IntFlag{Name: "max-message", Value: cfg.Chat.MaxMessage, Destination: &cfg.Chat.MaxMessage, EnvVars: env("MAX_MESSAGE"), Usage: "largest chat or presence frame in bytes"},
		&cli.Float64Flag{Name: "chat-rate", Value: cfg.ChatRate, Destination: &cfg.ChatRate, EnvVars: env("CHAT_RATE"), Usage: "chat messages per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "chat-burst", Value: cfg.ChatBurst, Destination: &cfg.ChatBurst, EnvVars: env("CHAT_BURST"), Usage: "chat messages one user may send at once above --chat-rate"},
		&cli.Float64Flag{Name: "presence-rate", Value: cfg.PresenceRate, Destination: &cfg.PresenceRate, EnvVars: env("PRESENCE_RATE"), Usage: "presence signals per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "presence-burst", Value: cfg.PresenceBurst, Destination: &cfg.PresenceBurst, EnvVars: env("PRESENCE_BURST"), Usage: "presence signals one user may send at once above --presence-rate"},
		&cli.Float64Flag{Name: "register-rate", Value: cfg.RegisterRate, Destination: &cfg.RegisterRate, EnvVars: env("REGISTER_RATE"), Usage: "registrations per second per client address (0: unlimited)"},
		&cli.IntFlag{Name: "register-burst", Value: cfg.RegisterBurst, Destination: &cfg.RegisterBurst, EnvVars: env("REGISTER_BURST"), Usage: "registrations one client address may make at once above --register-rate"},
		&cli.Float64Flag{Name: "register-node-rate", Value: cfg.RegisterNodeRate, Destination: &cfg.RegisterNodeRate, EnvVars: env("REGISTER_NODE_RATE"), Usage: "registrations per second on this node from all addresses together, so rotating addresses cannot register without bound (0: unlimited)"},
		&cli.IntFlag{Name: "register-node-burst", Value: cfg.RegisterNodeBurst, Destination: &cfg.RegisterNodeBurst, EnvVars: env("REGISTER_NODE_BURST"), Usage: "registrations this node takes at once above --register-node-rate"},
		&cli.Int64Flag{Name: "register-per-day", Value: cfg.RegisterPerDay, Destination: &cfg.RegisterPerDay, EnvVars: env("REGISTER_PER_DAY"), Usage: "accounts one client address (an IPv6 --ipv6-prefix network) may create per day, counted in Redis across nodes (0: unlimited)"},
		&cli.IntFlag{Name: "ipv6-prefix", Value: cfg.IPv6Prefix, Destination: &cfg.IPv6Prefix, EnvVars: env("IPV6_PREFIX"), Usage: "per-address limits count an IPv6 client by its network of this many bits (IPv4: each address)"},
		&cli.StringFlag{Name: "register-key", EnvVars: env("REGISTER_KEY"), Usage: "hex key (64 hex chars) of sign-up tokens: when set, register requires a signup_token from your sign-up service (see occase register-token)"},
		&cli.StringFlag{Name: "register-key-file", EnvVars: env("REGISTER_KEY_FILE"), Usage: "file holding --register-key"},
		&cli.DurationFlag{Name: "account-ttl", Value: cfg.Redis.AccountTTL, Destination: &cfg.Redis.AccountTTL, EnvVars: env("ACCOUNT_TTL"), Usage: "delete an account this long after its last login (0: never)"},
		&cli.Float64Flag{Name: "filenames-rate", Value: cfg.FilenamesRate, Destination: &cfg.FilenamesRate, EnvVars: env("FILENAMES_RATE"), Usage: "filenames requests per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "filenames-burst", Value: cfg.FilenamesBurst, Destination: &cfg.FilenamesBurst, EnvVars: env("FILENAMES_BURST"), Usage: "filenames requests one user may make at once above --filenames-rate"},
		&cli.Float64Flag{Name: "block-rate", Value: cfg.BlockRate, Destination: &cfg.BlockRate, EnvVars: env("BLOCK_RATE"), Usage: "block, unblock and blocks requests per second per user (0: unlimited)"},
		&cli.IntFlag{Name: "block-burst", Value: cfg.BlockBurst, Destination: &cfg.BlockBurst, EnvVars: env("BLOCK_BURST"), Usage: "block, unblock and blocks requests one user may make at once above --block-rate"},
		&cli.IntFlag{Name: "max-blocks", Value: cfg.MaxBlocks, Destination: &cfg.MaxBlocks, EnvVars: env("MAX_BLOCKS"), Usage: "users one user may block (refused beyond with too_many_blocks)"},
		&cli.Float64Flag{Name: "report-rate", Value: cfg.ReportRate, Destination: &cfg.ReportRate, EnvVars: env("REPORT_RATE"), Usage: "report requests per second per connection once --report-burst is spent (0: unlimited; default one per 30 s)"},
		&cli.IntFlag{Name: "report-burst", Value: cfg.ReportBurst, Destination: &cfg.ReportBurst, EnvVars: env("REPORT_BURST"), Usage: "report requests one connection may make at once above --report-rate"},
		&cli.IntFlag{Name: "report-reporters", Value: cfg.Reports.Reporters, Destination: &cfg.Reports.Reporters, EnvVars: env("REPORT_REPORTERS"), Usage: "distinct reporters kept and counted per post (reports past it are acknowledged, not stored)"},
		&cli.IntFlag{Name: "report-details", Value: cfg.Reports.Details, Destination: &cfg.Reports.Details, EnvVars: env("REPORT_DETAILS"), Usage: "latest reports kept in full (reason, time, text) per post, for 'occase moderate reports'"},
		&cli.IntFlag{Name: "auto-hide-reports", Value: cfg.Reports.HideAt, Destination: &cfg.Reports.HideAt, EnvVars: env("AUTO_HIDE_REPORTS"), Usage: "hide a post from everyone but its author, pending an operator's decision, once this many distinct users with accounts older than --auto-hide-min-age report it (0: never; at most --report-reporters)"},
		&cli.DurationFlag{Name: "auto-hide-min-age", Value: cfg.Posts.ReportMinAge, Destination: &cfg.Posts.ReportMinAge, EnvVars: env("AUTO_HIDE_MIN_AGE"), Usage: "how old a reporter's account must be for its report to count toward --auto-hide-reports (0: any account)"},
		&cli.IntFlag{Name: "report-queue-max", Value: cfg.Reports.Queue, Destination: &cfg.Reports.Queue, EnvVars: env("REPORT_QUEUE_MAX"), Usage: "reported posts kept in the review queue, all together (at least 1); when full, a new post's report evicts the oldest post with a single reporter, or is not stored if every post has several"},
		&cli.Float64Flag{Name: "read-rate-bytes", Value: cfg.ReadRateBytes, Destination: &cfg.ReadRateBytes, EnvVars: env("READ_RATE_BYTES"), Usage: "bytes per second one connection may send; over it the server stops reading it for a while (0: unlimited)"},
		&cli.IntFlag{Name: "read-burst-bytes", Value: cfg.ReadBurstBytes, Destination: &cfg.ReadBurstBytes, EnvVars: env("READ_BURST_BYTES"), Usage: "bytes one connection may send at once above --read-rate-bytes (at least 1024)"},
		&cli.Float64Flag{Name: "read-rate-frames", Value: cfg.ReadRateFrames, Destination: &cfg.ReadRateFrames, EnvVars: env("READ_RATE_FRAMES"), Usage: "frames per second one connection may send; over it the server stops reading it for a while (0: unlimited)"},
		&cli.IntFlag{Name: "read-burst-frames", Value: cfg.ReadBurstFrames, Destination: &cfg.ReadBurstFrames, EnvVars: env("READ_BURST_FRAMES"), Usage: "frames one connection may send at once above --read-rate-frames"},
		&cli.IntFlag{Name: "abuse-limit", Value: cfg.AbuseLimit, Destination: &cfg.AbuseLimit, EnvVars: env("ABUSE_LIMIT"), Usage: "read pauses and rate-limit refusals one connection may cause within --abuse-window before it is closed with 4006 (0: never closed)"},
		&cli.DurationFlag{Name: "abuse-window", Value: cfg.AbuseWindow, Destination: &cfg.AbuseWindow, EnvVars: env("ABUSE_WINDOW"), Usage: "the window of --abuse-limit"},
		&cli.DurationFlag{Name: "abuse-cooloff", Value: cfg.AbuseCoolOff, Destination: &cfg.AbuseCoolOff, EnvVars: env("ABUSE_COOLOFF"), Usage: "how long a user (before login: a client address) closed with 4006 is refused login and registration on this node (0: not at all)"},

		&cli.StringFlag{Name: "menu", EnvVars: env("MENU"), Usage: "menu file (docs/menus.md); none: any well-formed code (the embedded broker uses the demo menu)"},
		&cli.IntFlag{Name: "location-depth", Value: cfg.Posts.LocationDepth, Destination: &cfg.Posts.LocationDepth, EnvVars: env("LOCATION_DEPTH"), Usage: "filter depth of location codes (1..4)"},
		&cli.IntFlag{Name: "product-depth", Value: cfg.Posts.ProductDepth, Destination: &cfg.Posts.ProductDepth, EnvVars: env("PRODUCT_DEPTH"), Usage: "filter depth of product codes (1..4)"},
		&cli.IntFlag{Name: "max-catchup", Value: cfg.Posts.MaxCatchUp, Destination: &cfg.Posts.MaxCatchUp, EnvVars: env("MAX_CATCHUP"), Usage: "posts sent after a subscribe_ack, at most"},
		&cli.IntFlag{Name: "post-quota-n", Value: cfg.Posts.QuotaN, Destination: &cfg.Posts.QuotaN, EnvVars: env("POST_QUOTA_N"), Usage: "publishes allowed per user per --post-quota-period"},
		&cli.DurationFlag{Name: "post-quota-period", Value: cfg.Posts.QuotaPeriod, Destination: &cfg.Posts.QuotaPeriod, EnvVars: env("POST_QUOTA_PERIOD"), Usage: "sliding window of the publish quota"},
		&cli.DurationFlag{Name: "post-expiry", Value: cfg.Posts.Expiry, Destination: &cfg.Posts.Expiry, EnvVars: env("POST_EXPIRY"), Usage: "posts this old are removed and never returned"},
		&cli.IntFlag{Name: "max-body", Value: cfg.Posts.Limits.MaxBody, Destination: &cfg.Posts.Limits.MaxBody, EnvVars: env("MAX_BODY"), Usage: "largest post body in bytes (as sent, JSON-escaped)"},
		&cli.IntFlag{Name: "max-sub-locations", Value: cfg.Posts.Limits.MaxLocations, Destination: &cfg.Posts.Limits.MaxLocations, EnvVars: env("MAX_SUB_LOCATIONS"), Usage: "location hashes in one subscription, at most"},
		&cli.IntFlag{Name: "max-sub-products", Value: cfg.Posts.Limits.MaxProducts, Destination: &cfg.Posts.Limits.MaxProducts, EnvVars: env("MAX_SUB_PRODUCTS"), Usage: "product hashes in one subscription, at most"},
		&cli.IntFlag{Name: "max-scan", Value: cfg.Posts.MaxScan, Destination: &cfg.Posts.MaxScan, EnvVars: env("MAX_SCAN"), Usage: "posts one read (a catch-up, a GET /api/posts page or count) examines at most; a read that stops there answers a cursor to continue from"},
		&cli.Float64Flag{Name: "read-rate", Value: cfg.Posts.ReadRate, Destination: &cfg.Posts.ReadRate, EnvVars: env("READ_RATE"), Usage: "GET /api/posts and /api/posts/{id} requests per second per client address (0: unlimited); over it: 429 rate_limited"},
		&cli.IntFlag{Name: "read-burst", Value: cfg.Posts.ReadBurst, Destination: &cfg.Posts.ReadBurst, EnvVars: env("READ_BURST"), Usage: "HTTP post reads one client address may make at once above --read-rate"},
		&cli.Float64Flag{Name: "subscribe-rate", Value: cfg.Posts.SubscribeRate, Destination: &cfg.Posts.SubscribeRate, EnvVars: env("SUBSCRIBE_RATE"), Usage: "subscribes (and my_posts reads) per second per user (0: unlimited); over it: subscribe_ack (my_posts_ack) fail rate_limited"},
		&cli.IntFlag{Name: "subscribe-burst", Value: cfg.Posts.SubscribeBurst, Destination: &cfg.Posts.SubscribeBurst, EnvVars: env("SUBSCRIBE_BURST"), Usage: "subscribes one user may make at once above --subscribe-rate"},
		&cli.Float64Flag{Name: "edit-rate", Value: cfg.Posts.EditRate, Destination: &cfg.Posts.EditRate, EnvVars: env("EDIT_RATE"), Usage: "update, set_status and renew commands per second per user (0: unlimited); over it: rate_limited"},
		&cli.IntFlag{Name: "edit-burst", Value: cfg.Posts.EditBurst, Destination: &cfg.Posts.EditBurst, EnvVars: env("EDIT_BURST"), Usage: "edits one user may make at once above --edit-rate"},
		&cli.IntFlag{Name: "max-search-words", Value: cfg.Posts.MaxWords, Destination: &cfg.Posts.MaxWords, EnvVars: env("MAX_SEARCH_WORDS"), Usage: "distinct words in a node's search index (0: no bound); words new to a full index are not indexed"},
		&cli.DurationFlag{Name: "renew-window", Value: cfg.Posts.RenewWindow, Destination: &cfg.Posts.RenewWindow, EnvVars: env("RENEW_WINDOW"), Usage: "how long before its expiry a post may be renewed"},
		&cli.IntFlag{Name: "max-posts", Value: cfg.Posts.MaxPosts, Destination: &cfg.Posts.MaxPosts, EnvVars: env("MAX_POSTS"), Usage: "live posts held, in Redis (publish refused posts_full) and in each node's index (0: no bound); about 1.7 KB of node RAM and 0.8 KB of Redis each"},
		&cli.Int64Flag{Name: "max-post-bytes", Value: cfg.Posts.MaxPostBytes, Destination: &cfg.Posts.MaxPostBytes, EnvVars: env("MAX_POST_BYTES"), Usage: "total bytes of the live posts' JSON, in Redis and in each node (0: no bound)"},
		&cli.IntFlag{Name: "posts-per-address", Value: cfg.Posts.PostsPerAddress, Destination: &cfg.Posts.PostsPerAddress, EnvVars: env("POSTS_PER_ADDRESS"), Usage: "publishes per client address per UTC day, all users together (0: unlimited); over it: quota_exceeded"},
		&cli.StringSliceFlag{Name: "cors-origins", Value: cli.NewStringSlice(cfg.Posts.CORSOrigins...), EnvVars: env("CORS_ORIGINS"), Usage: "web origins allowed to use the HTTP API (/api/...) and to upload and fetch images from a browser (e.g. https://app.example.com, or *)"},
		&cli.StringFlag{Name: "image-key", EnvVars: env("IMAGE_KEY"), Usage: "32-byte key of the upload names (64 hex chars, or 32 raw characters as in the original configs); the same on db and img nodes; role all without it uses a random key"},
		&cli.StringFlag{Name: "image-key-file", EnvVars: env("IMAGE_KEY_FILE"), Usage: "file holding --image-key"},
		&cli.StringFlag{Name: "image-dir", Value: cfg.ImageDir, Destination: &cfg.ImageDir, EnvVars: env("IMAGE_DIR"), Usage: "storage root of uploaded images (roles img and all)"},
		&cli.Int64Flag{Name: "image-max-bytes", Value: cfg.Images.MaxBytes, Destination: &cfg.Images.MaxBytes, EnvVars: env("IMAGE_MAX_BYTES"), Usage: "largest upload body in bytes (larger: 413)"},
		&cli.Int64Flag{Name: "image-max-pixels", Value: cfg.Images.MaxPixels, Destination: &cfg.Images.MaxPixels, EnvVars: env("IMAGE_MAX_PIXELS"), Usage: "largest width*height accepted (larger: 413)"},
		&cli.DurationFlag{Name: "image-upload-timeout", Value: cfg.Images.UploadTimeout, Destination: &cfg.Images.UploadTimeout, EnvVars: env("IMAGE_UPLOAD_TIMEOUT"), Usage: "time allowed to receive one upload's body (slower: 408)"},
		&cli.IntFlag{Name: "image-max-uploads", Value: cfg.Images.MaxUploads, Destination: &cfg.Images.MaxUploads, EnvVars: env("IMAGE_MAX_UPLOADS"), Usage: "uploads received and checked at once, each held in memory; others wait"},
		&cli.DurationFlag{Name: "image-name-ttl", Value: cfg.Images.NameTTL, Destination: &cfg.Images.NameTTL, EnvVars: env("IMAGE_NAME_TTL"), Usage: "time after issue (plus the rest of its issue day, UTC) an upload name may be used (later: 410)"},
		&cli.IntFlag{Name: "image-uploads-per-address", Value: cfg.Images.UploadsPerAddress, Destination: &cfg.Images.UploadsPerAddress, EnvVars: env("IMAGE_UPLOADS_PER_ADDRESS"), Usage: "uploads from one client address at once (more: 503 with Retry-After)"},
		&cli.DurationFlag{Name: "image-queue-wait", Value: cfg.Images.QueueWait, Destination: &cfg.Images.QueueWait, EnvVars: env("IMAGE_QUEUE_WAIT"), Usage: "longest an upload waits for a slot before 503 with Retry-After"},
		&cli.Int64Flag{Name: "image-min-upload-rate", Value: cfg.Images.MinRate, Destination: &cfg.Images.MinRate, EnvVars: env("IMAGE_MIN_UPLOAD_RATE"), Usage: "slowest average upload in bytes/s after --image-upload-grace (slower: 408); 0 disables"},
		&cli.DurationFlag{Name: "image-upload-grace", Value: cfg.Images.UploadGrace, Destination: &cfg.Images.UploadGrace, EnvVars: env("IMAGE_UPLOAD_GRACE"), Usage: "time an upload's body has before --image-min-upload-rate applies"},
		&cli.Int64Flag{Name: "image-preempt-below", Value: cfg.Images.PreemptBelow, Destination: &cfg.Images.PreemptBelow, EnvVars: env("IMAGE_PREEMPT_BELOW"), Usage: "when every upload slot is taken, an upload older than 2 s averaging less than this many bytes/s may lose its slot to a waiting one (503 preempted); 0 disables"},
	}
}

// configFrom finishes the configuration the flags were parsed into: the
// flags bound with Destination already set their fields in cfg, so this
// step only turns the options that need it (files, hex keys, lists, CIDRs,
// "0 means off") into fields, and checks the pairs that go together.
func configFrom(c *cli.Context, cfg roles.Config) (roles.Config, error) {
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	cfg.Domains = splitList(c.StringSlice("domain"))
	cfg.Redis.Addrs = splitList(c.StringSlice("redis"))
	cfg.Redis.Sentinels = splitList(c.StringSlice("redis-sentinel"))
	if err := checkAddrs("redis", cfg.Redis.Addrs); err != nil {
		return cfg, err
	}
	if err := checkAddrs("redis-sentinel", cfg.Redis.Sentinels); err != nil {
		return cfg, err
	}
	if f := c.String("redis-password-file"); f != "" {
		if cfg.Redis.Password != "" {
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
	rk, err := roles.LoadRegisterKey(c.String("register-key"), c.String("register-key-file"))
	if err != nil {
		return cfg, err
	}
	cfg.RegisterKey = rk
	if h, r := cfg.Reports.HideAt, cfg.Reports.OrDefaults().Reporters; h < 0 || h > r {
		return cfg, fmt.Errorf("--auto-hide-reports %d: want 0 (off) to --report-reporters (%d): reporters past that are not counted", h, r)
	}
	if cfg.Posts.ReportMinAge < 0 {
		return cfg, fmt.Errorf("--auto-hide-min-age must not be negative")
	}
	if cfg.Reports.Queue < 1 {
		return cfg, fmt.Errorf("--report-queue-max %d: want at least 1 (the review queue is always bounded)", cfg.Reports.Queue)
	}
	if cfg.Redis.AccountTTL < 0 {
		return cfg, fmt.Errorf("--account-ttl must not be negative")
	}
	if f := c.String("menu"); f != "" {
		m, err := posts.LoadMenu(f)
		if err != nil {
			return cfg, fmt.Errorf("--menu: %w", err)
		}
		cfg.Posts.Menu = m
	}
	// 0 on the command line means "no limit"; in posts.Config it means
	// "the default" and a negative value turns the limit off.
	for _, v := range []*float64{&cfg.Posts.ReadRate, &cfg.Posts.SubscribeRate, &cfg.Posts.EditRate} {
		if *v == 0 {
			*v = -1
		}
	}
	for _, v := range []*int{&cfg.Posts.MaxWords, &cfg.Posts.MaxPosts, &cfg.Posts.PostsPerAddress} {
		if *v == 0 {
			*v = -1
		}
	}
	if cfg.Posts.MaxPostBytes == 0 {
		cfg.Posts.MaxPostBytes = -1
	}
	cfg.Posts.CORSOrigins = splitList(c.StringSlice("cors-origins"))
	key, err := images.LoadKey(c.String("image-key"), c.String("image-key-file"))
	switch {
	case errors.Is(err, images.ErrNoKey): // roles decides what a missing key means
	case err != nil:
		return cfg, fmt.Errorf("--image-key: %w", err)
	default:
		cfg.ImageKey = key
	}
	if cfg.Images.MinRate == 0 {
		cfg.Images.MinRate = -1 // images: negative is off, zero the default
	}
	if cfg.Images.PreemptBelow == 0 {
		cfg.Images.PreemptBelow = -1 // likewise
	}
	cfg.Images.CORSOrigins = cfg.Posts.CORSOrigins
	if err := pushConfigFrom(c, &cfg); err != nil {
		return cfg, err
	}
	if err := imageLifecycleConfigFrom(c, &cfg); err != nil {
		return cfg, err
	}
	if err := checkNumbers(c); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// checkAddrs refuses a Redis address that no retry can reach: not
// host:port (a redis:// URL, a missing or named port), which a node
// would otherwise retry in the background for ever. A host that does not
// resolve yet is left to the retries.
func checkAddrs(flag string, addrs []string) error {
	for _, a := range addrs {
		if flag == "redis" && a == broker.Embedded {
			continue
		}
		_, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
			return fmt.Errorf("--%s %q: want host:port, e.g. redis:6379 (no URL scheme)", flag, a)
		}
	}
	return nil
}

// checkNumbers refuses what no number flag means: a negative value (a
// negative --idle-timeout crashed the node at its first connection) and a
// burst under 1 beside a rate that is on (--chat-burst 0 refused every
// message as rate_limited). Flags with a check of their own have made it
// already.
func checkNumbers(c *cli.Context) error {
	num := func(f cli.Flag) (float64, string, bool) {
		n := f.Names()[0]
		switch f.(type) {
		case *cli.DurationFlag:
			return float64(c.Duration(n)), c.Duration(n).String(), true
		case *cli.IntFlag:
			return float64(c.Int(n)), fmt.Sprint(c.Int(n)), true
		case *cli.Int64Flag:
			return float64(c.Int64(n)), fmt.Sprint(c.Int64(n)), true
		case *cli.Float64Flag:
			return c.Float64(n), fmt.Sprint(c.Float64(n)), true
		}
		return 0, "", false
	}
	byName := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		byName[f.Names()[0]] = f
	}
	for _, f := range c.Command.Flags {
		n := f.Names()[0]
		v, text, ok := num(f)
		if !ok {
			continue
		}
		if v < 0 {
			return fmt.Errorf("--%s %s: must not be negative", n, text)
		}
		rf := byName[strings.Replace(n, "burst", "rate", 1)]
		if !strings.Contains(n, "burst") || rf == nil {
			continue
		}
		if rate, rtext, _ := num(rf); rate > 0 && v < 1 {
			return fmt.Errorf("--%s %s: want at least 1 while --%s is %s (0 there turns the limit off)", n, text, rf.Names()[0], rtext)
		}
	}
	return nil
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

// newLogger builds the logger on a logs.Limiter rather than zap's
// sampler, which drops lines without saying so: at most perSecond lines of
// each message a second, and a line with the count of the others.
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
