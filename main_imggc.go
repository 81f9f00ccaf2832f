package main

// Image lifecycle options (the sweep and the disk guard) and the
// `occase images gc` command, kept apart from main.go's long flag list.

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/occase/occase/roles"
	"github.com/urfave/cli/v2"
)

func imageLifecycleFlags(cfg *roles.Config) []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "image-gc-every", Value: cfg.ImageGC.Every, Destination: &cfg.ImageGC.Every, EnvVars: env("IMAGE_GC_EVERY"), Usage: "role all: sweep the image store this often, deleting images no live post links to that are older than --image-orphan-age (0: never; role img never sweeps: run 'occase images gc')"},
		&cli.DurationFlag{Name: "image-orphan-age", Value: cfg.ImageGC.OrphanAge, Destination: &cfg.ImageGC.OrphanAge, EnvVars: env("IMAGE_ORPHAN_AGE"), Usage: "an image no live post links to is deleted once it was stored this long ago: the time an app has from upload to publish"},
		&cli.Float64Flag{Name: "image-gc-rate", Value: cfg.ImageGC.DeleteRate, Destination: &cfg.ImageGC.DeleteRate, EnvVars: env("IMAGE_GC_RATE"), Usage: "image deletions per second a sweep makes at most (0: no cap)"},
		&cli.StringFlag{Name: "image-min-free", Value: "1GiB", EnvVars: env("IMAGE_MIN_FREE"), Usage: "refuse uploads (507 insufficient_storage) while the image directory's file system has less free space than this: bytes (1GiB, 500MB, 1073741824) or a percentage (5%); 0: never"},
	}
}

// imageLifecycleConfigFrom reads the options the flags do not bind.
func imageLifecycleConfigFrom(c *cli.Context, cfg *roles.Config) error {
	g := &cfg.ImageGC
	switch {
	case g.DeleteRate < 0:
		return errors.New("--image-gc-rate must not be negative")
	case g.DeleteRate == 0:
		g.DeleteRate = -1 // images: negative is no cap, zero the default
	}
	if g.Every < 0 {
		return errors.New("--image-gc-every must not be negative")
	}
	// The age is counted from the upload; less than an hour cannot be
	// meant (an app needs time between uploading and publishing).
	if g.OrphanAge < time.Hour {
		return fmt.Errorf("--image-orphan-age %v: want at least 1h", g.OrphanAge)
	}
	if !c.IsSet("image-min-free") && c.String("image-min-free") == "" {
		return nil // occase images gc: no uploads, no guard
	}
	b, pct, err := parseMinFree(c.String("image-min-free"))
	if err != nil {
		return fmt.Errorf("--image-min-free: %w", err)
	}
	cfg.Images.MinFreeBytes, cfg.Images.MinFreePercent = b, pct
	return nil
}

// parseMinFree reads "1GiB", "500MB", "1073741824" (bytes) or "5%". Zero
// turns the guard off: -1 bytes (images: negative is off, zero the
// default).
func parseMinFree(s string) (bytes int64, pct float64, err error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v >= 100 {
			return 0, 0, fmt.Errorf("%q: want a percentage from 0 to under 100", s)
		}
		if v == 0 {
			return -1, 0, nil
		}
		return -1, v, nil
	}
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := 1.0
	num := s
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, 0, fmt.Errorf("%q: want bytes (1GiB, 500MB, 1073741824) or a percentage (5%%)", s)
	}
	if v == 0 {
		return -1, 0, nil
	}
	return int64(v * mult), 0, nil
}

// imagesCommand is `occase images gc`: one sweep of the image directory
// against the posts in Redis, for a cron job on the volume of img nodes.
func imagesCommand() *cli.Command {
	d := serveDefaults()
	var flags []cli.Flag
	for _, f := range serveFlags(&d) {
		n := f.Names()[0]
		if strings.HasPrefix(n, "redis") || n == "image-key" || n == "image-key-file" || n == "image-dir" ||
			n == "log-format" || n == "log-level" {
			flags = append(flags, f)
		}
	}
	for _, f := range imageLifecycleFlags(&d) {
		if n := f.Names()[0]; n == "image-orphan-age" || n == "image-gc-rate" {
			flags = append(flags, f)
		}
	}
	flags = append(flags, &cli.BoolFlag{Name: "dry-run", Usage: "count and log what would be deleted; delete nothing"})
	return &cli.Command{
		Name:  "images",
		Usage: "image store tools",
		Subcommands: []*cli.Command{{
			Name: "gc",
			Usage: "delete the stored images no live post links to that are older than --image-orphan-age, once " +
				"(run it on the img nodes' volume from cron; one sweep at a time runs, by a lease in Redis)",
			Flags: flags,
			Action: func(c *cli.Context) error {
				cfg, err := configFrom(c, d)
				if err != nil {
					return err
				}
				cfg.ImageGC.DryRun = c.Bool("dry-run")
				log, limiter, err := newLogger(cmp.Or(c.String("log-format"), "console"), cmp.Or(c.String("log-level"), "info"), 0)
				if err != nil {
					return err
				}
				defer log.Sync()
				defer limiter.Close()
				ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
				defer stop()
				res, err := roles.SweepImages(ctx, cfg, log)
				if err != nil {
					return fmt.Errorf("image sweep (%s): %w", cmp.Or(res.Outcome, "not started"), err)
				}
				return nil
			},
		}},
	}
}
