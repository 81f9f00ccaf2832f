package roles

import (
	"context"
	"errors"
	"fmt"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/images"
	"go.uber.org/zap"
)

// Image lifecycle (docs/operations.md): which nodes sweep the image store.
//
// Role all sweeps its own store every --image-gc-every: the Redis and the
// directory are both at hand. Role img does not, even when given --redis:
// it stays a node that needs nothing but its disk (no Redis credentials on
// the node that takes uploads from the internet, no Redis outage that
// touches it); a store behind img nodes is swept by `occase images gc`,
// run as a cron job or Kubernetes CronJob on the volume.

// startImageGC runs the periodic sweep of a node of role all. On the
// embedded server there is no lease: no other process can sweep this
// node's store through it, and the embedded server expires no key by the
// clock, so a lease kept in a snapshot across a crash would stop every
// later sweep.
func (s *Server) startImageGC(signer *images.Signer) {
	if s.cfg.ImageGC.Every <= 0 || s.imgGC == nil {
		return
	}
	gc := s.imgGC
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		gc.Run(s.bgCtx)
	}()
}

func (s *Server) newImageGC(signer *images.Signer, gcc images.GCConfig, st *images.DirStore, b *broker.Client) *images.GC {
	gcc.Clock = s.cfg.Clock
	gcc.Metrics = s.m.reg
	var lease images.Leaser
	if !b.Embedded() {
		lease = b
	}
	return images.NewGC(gcc, signer, st, b, lease, s.log.Named("imggc"))
}

// SweepImages runs one sweep of cfg.ImageDir against the posts in the Redis
// of cfg.Redis, under the lease, for `occase images gc`. It needs a real
// Redis (the embedded server lives inside the node that runs it: that node
// sweeps by itself) and the image key of the nodes.
func SweepImages(ctx context.Context, cfg Config, log *zap.Logger) (images.SweepResult, error) {
	if len(cfg.Redis.Sentinels) == 0 && (len(cfg.Redis.Addrs) == 0 || (len(cfg.Redis.Addrs) == 1 && cfg.Redis.Addrs[0] == broker.Embedded)) {
		return images.SweepResult{}, errors.New("the image sweep needs --redis (or --redis-sentinel), the Redis of the db nodes; a node of role all on the embedded server sweeps by itself (--image-gc-every)")
	}
	if cfg.ImageKey == nil {
		return images.SweepResult{}, errors.New("the image sweep needs --image-key or --image-key-file, the key of the nodes: without it no link verifies and nothing is known to be linked")
	}
	signer, err := images.NewSigner(cfg.ImageKey)
	if err != nil {
		return images.SweepResult{}, err
	}
	st, err := images.NewDirStore(cfg.ImageDir)
	if err != nil {
		return images.SweepResult{}, err
	}
	defer st.Close()
	ro := cfg.Redis
	ro.Once = true
	b, err := broker.Open(ctx, ro, log.Named("broker"))
	if err != nil {
		return images.SweepResult{}, fmt.Errorf("open Redis: %w", err)
	}
	defer b.Close()
	gcc := cfg.ImageGC
	if gcc.Clock == nil {
		gcc.Clock = cfg.Clock
	}
	gc := images.NewGC(gcc, signer, st, b, b, log.Named("imggc"))
	res, err := gc.Sweep(ctx)
	if err == nil && res.Outcome == images.OutcomeRefused {
		err = errors.New("refused: no post was ever published under this Redis and --redis-prefix")
	}
	return res, err
}
