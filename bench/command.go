package bench

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func env(name string) []string { return []string{"OCCASE_BENCH_" + name} }

// Command is `occase bench`. main.go only lists it; the flags and their
// mapping to Config live here, next to the code they configure.
func Command() *cli.Command {
	d := DefaultConfig()
	return &cli.Command{
		Name:  "bench",
		Usage: "load one or more running nodes with simulated apps and report throughput, latency and exactness",
		Description: `Scenarios:
   chat     users chat in pairs (across nodes when several --url are given), with
            delivery and read receipts and typing presence
   fanout   --publishers publish posts at --post-rate; --users subscribers get them all
   connect  --users connections register, close, then log in again (a login storm)
   idle     --users logged-in connections stay idle for --duration; with --metrics or
            --server-pid the report gives the server memory per connection
   abuse    the chat load alone (baseline), then again while hostile clients
            (--attacks) flood, subscribe, register, publish, upload slowly and
            scan; reports both phases, the p99 ratio, what each attacker got
            and the growth of server (--server-pid, --metrics) and Redis
            (--redis-addr) memory. Start the servers with their real limits.

Only loopback addresses are accepted unless --allow-remote is given. Start the
servers with --chat-rate 0 --presence-rate 0 --register-rate 0 --register-per-day 0 --register-node-rate 0,
or the per-user and per-address limits are what you measure.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "scenario", Value: d.Scenario, EnvVars: env("SCENARIO"), Usage: "chat, fanout, connect, idle or abuse"},
			&cli.StringSliceFlag{Name: "url", Value: cli.NewStringSlice(d.URLs...), EnvVars: env("URL"), Usage: "ws:// URL of a node (repeat, or comma-separate, for several); users are spread across them"},
			&cli.IntFlag{Name: "users", Value: d.Users, EnvVars: env("USERS"), Usage: "chat: users (paired); fanout: subscribers; connect, idle: connections"},
			&cli.DurationFlag{Name: "duration", Value: d.Duration, EnvVars: env("DURATION"), Usage: "length of the load phase (connect: bound on each storm; idle: how long to hold)"},
			&cli.DurationFlag{Name: "warmup", Value: d.Warmup, EnvVars: env("WARMUP"), Usage: "first part of --duration left out of the figures"},
			&cli.DurationFlag{Name: "drain", Value: d.Drain, EnvVars: env("DRAIN"), Usage: "after the load, how long to wait for messages in flight before counting the rest as lost"},
			&cli.Float64Flag{Name: "rate", Value: d.Rate, EnvVars: env("RATE"), Usage: "chat messages per second per user (0: as fast as --window allows)"},
			&cli.IntFlag{Name: "window", Value: d.Window, EnvVars: env("WINDOW"), Usage: "unanswered messages (or posts) in flight per sender"},
			&cli.IntFlag{Name: "size", Value: d.Size, EnvVars: env("SIZE"), Usage: "approximate bytes of a chat frame or post body"},
			&cli.IntFlag{Name: "count", Value: d.Count, EnvVars: env("COUNT"), Usage: "chat: messages per user; fanout: posts per publisher (0: until --duration)"},
			&cli.BoolFlag{Name: "receipts", Value: d.Receipts, EnvVars: env("RECEIPTS"), Usage: "answer each chat message with app_ack_received"},
			&cli.BoolFlag{Name: "no-receipts", EnvVars: env("NO_RECEIPTS"), Usage: "chat: send chat messages only, no receipts and no typing presence, so each delivery is exactly one message and its server_ack (overrides --receipts and --typing-every)"},
			&cli.IntFlag{Name: "read-every", Value: d.ReadEvery, EnvVars: env("READ_EVERY"), Usage: "send app_ack_read after every Nth chat message received (0: never)"},
			&cli.IntFlag{Name: "typing-every", Value: d.TypingEvery, EnvVars: env("TYPING_EVERY"), Usage: "send a 'writing' presence before every Nth chat message (0: never)"},
			&cli.BoolFlag{Name: "reconnect", EnvVars: env("RECONNECT"), Usage: "chat: log in again (next node first, with back-off) when a connection ends, drop messages that come again by msg_id, and count exactly across restarts"},
			&cli.IntFlag{Name: "publishers", Value: d.Publishers, EnvVars: env("PUBLISHERS"), Usage: "fanout: publishing users"},
			&cli.Float64Flag{Name: "post-rate", Value: d.PostRate, EnvVars: env("POST_RATE"), Usage: "fanout: posts per second per publisher (0: as fast as --window allows)"},
			&cli.StringSliceFlag{Name: "attacks", Value: cli.NewStringSlice("all"), EnvVars: env("ATTACKS"), Usage: "abuse: kind[=clients[@rate]],... of flood, fields, subscribe, register, publish, upload, scan; all; none (rate: operations per second per client, overriding --attack-rate)"},
			&cli.Float64Flag{Name: "attack-rate", Value: d.Abuse.Rate, EnvVars: env("ATTACK_RATE"), Usage: "abuse: requests per second per hostile client (0: as fast as answers come; a flood is paced only by its own kind=clients@rate)"},
			&cli.DurationFlag{Name: "attack-ramp", Value: d.Abuse.Ramp, EnvVars: env("ATTACK_RAMP"), Usage: "abuse: how long the attackers run before the attacked phase's chat starts"},
			&cli.IntFlag{Name: "stored-posts", Value: d.Abuse.StoredPosts, EnvVars: env("STORED_POSTS"), Usage: "abuse: posts published before the run for subscribe storms and scans (0: use the store as it is)"},
			&cli.IntFlag{Name: "posts-per-account", Value: d.Abuse.PostsPerAccount, EnvVars: env("POSTS_PER_ACCOUNT"), Usage: "abuse: posts each seeding account publishes (the server's quota)"},
			&cli.IntFlag{Name: "source-addrs", Value: d.Abuse.SourceAddrs, EnvVars: env("SOURCE_ADDRS"), Usage: "abuse: loopback source addresses (in 127.0.0.0/8) each storm rotates over"},
			&cli.StringFlag{Name: "http-url", EnvVars: env("HTTP_URL"), Usage: "abuse: http:// base of the node for /api/posts (default: the first --url's host)"},
			&cli.StringFlag{Name: "img-url", EnvVars: env("IMG_URL"), Usage: "abuse: http:// base of the img node (default: --http-url, i.e. role all)"},
			&cli.DurationFlag{Name: "trickle", Value: d.Abuse.Trickle, EnvVars: env("TRICKLE"), Usage: "abuse: time between the bytes of a slow upload"},
			&cli.BoolFlag{Name: "upload-networks", EnvVars: env("UPLOAD_NETWORKS"), Usage: "abuse: each slow uploader from its own /24 (127.<block>.<client>.1, a botnet's spread) rather than all from one"},
			&cli.StringFlag{Name: "redis-addr", EnvVars: env("REDIS_ADDR"), Usage: "abuse: host:port of the Redis the nodes use, to report its used_memory; connect: to report its commands per login"},
			&cli.IntFlag{Name: "concurrency", Value: d.Concurrency, EnvVars: env("CONCURRENCY"), Usage: "dials and logins in flight at once"},
			&cli.StringSliceFlag{Name: "metrics", EnvVars: env("METRICS"), Usage: "Prometheus /metrics URL of a node, for its memory and connection figures (repeat per node)"},
			&cli.IntFlag{Name: "login-rounds", Value: 1, EnvVars: env("LOGIN_ROUNDS"), Usage: "connect: log the registered users in this many times over (each round closes before the next); with --server-pid the report gives each process's CPU per login over these rounds alone"},
			&cli.IntSliceFlag{Name: "cpu-pid", EnvVars: env("CPU_PID"), Usage: "PID of a server process on this machine (a node, Redis) whose CPU time over the measured window only the report gives, with the bench's own and both per delivery (repeat per process)"},
			&cli.IntSliceFlag{Name: "server-pid", EnvVars: env("SERVER_PID"), Usage: "PID of a server process on this machine, to read its VmRSS (repeat per node)"},
			&cli.BoolFlag{Name: "json", EnvVars: env("JSON"), Usage: "print the report as JSON"},
			&cli.BoolFlag{Name: "allow-remote", EnvVars: env("ALLOW_REMOTE"), Usage: "accept non-loopback targets (never point this at a server that is not yours)"},
			&cli.DurationFlag{Name: "progress-every", Value: d.ProgressEvery, Usage: "period of the progress line (on stderr)"},
			&cli.BoolFlag{Name: "quiet", Usage: "no progress line"},
			&cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write the bench's own CPU profile here (to check that the load generator is not the bottleneck)"},
		},
		Action: func(c *cli.Context) error {
			cfg := d
			cfg.Scenario = c.String("scenario")
			cfg.URLs = splitList(c.StringSlice("url"))
			cfg.Users = c.Int("users")
			cfg.Duration = c.Duration("duration")
			cfg.Warmup = c.Duration("warmup")
			cfg.Drain = c.Duration("drain")
			cfg.Rate = c.Float64("rate")
			cfg.Window = c.Int("window")
			cfg.Size = c.Int("size")
			cfg.Count = c.Int("count")
			cfg.Receipts = c.Bool("receipts")
			cfg.ReadEvery = c.Int("read-every")
			cfg.TypingEvery = c.Int("typing-every")
			if c.Bool("no-receipts") {
				cfg.Receipts, cfg.TypingEvery = false, 0
			}
			cfg.Reconnect = c.Bool("reconnect")
			cfg.Publishers = c.Int("publishers")
			cfg.PostRate = c.Float64("post-rate")
			cfg.Concurrency = c.Int("concurrency")
			cfg.LoginRounds = c.Int("login-rounds")
			attacks, rates, err := ParseAttacks(splitList(c.StringSlice("attacks")))
			if err != nil {
				return err
			}
			cfg.Abuse.Attacks, cfg.Abuse.Rates = attacks, rates
			cfg.Abuse.Rate = c.Float64("attack-rate")
			cfg.Abuse.Ramp = c.Duration("attack-ramp")
			cfg.Abuse.StoredPosts = c.Int("stored-posts")
			cfg.Abuse.PostsPerAccount = c.Int("posts-per-account")
			cfg.Abuse.SourceAddrs = c.Int("source-addrs")
			cfg.Abuse.HTTPURL = c.String("http-url")
			cfg.Abuse.ImgURL = c.String("img-url")
			cfg.Abuse.Trickle = c.Duration("trickle")
			cfg.Abuse.UploadNetworks = c.Bool("upload-networks")
			cfg.Abuse.RedisAddr = c.String("redis-addr")
			cfg.Metrics = splitList(c.StringSlice("metrics"))
			cfg.ServerPIDs = c.IntSlice("server-pid")
			cfg.CPUPIDs = c.IntSlice("cpu-pid")
			cfg.AllowRemote = c.Bool("allow-remote")
			cfg.ProgressEvery = c.Duration("progress-every")
			if !c.Bool("quiet") {
				// Progress goes to stderr so that stdout holds only the
				// report (JSON stays parseable); redrawn in place on a
				// terminal, plain lines in a log.
				cfg.Progress = os.Stderr
				cfg.ProgressTerminal = term.IsTerminal(int(os.Stderr.Fd()))
			}
			if f := c.String("cpuprofile"); f != "" {
				out, err := os.Create(f)
				if err != nil {
					return err
				}
				defer out.Close()
				if err := pprof.StartCPUProfile(out); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := Run(ctx, cfg)
			if rep != nil {
				if c.Bool("json") {
					if werr := rep.WriteJSON(os.Stdout); werr != nil {
						return werr
					}
				} else if werr := rep.WriteText(os.Stdout); werr != nil {
					return werr
				}
			}
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			return nil
		},
	}
}

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
