// Command connprobe measures what idle logged-in connections cost a db
// node: it reads the node's resident memory (from /proc, so the node must
// run on this machine), opens -n WebSockets that each register (and so
// stay logged in and subscribed), reads the memory again and prints the
// difference per connection. docs/operations.md quotes its output.
//
//	occase serve --role=db --redis=embedded --register-rate 0 --register-per-day 0 --register-node-rate 0 &
//	go run ./scripts/connprobe -addr 127.0.0.1:8080 -pid $! -n 10000
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "db node")
	pid := flag.Int("pid", 0, "process id of the node")
	n := flag.Int("n", 10000, "connections")
	par := flag.Int("parallel", 50, "connections opened at once")
	flag.Parse()
	if err := run(*addr, *pid, *n, *par); err != nil {
		fmt.Fprintln(os.Stderr, "connprobe:", err)
		os.Exit(1)
	}
}

func run(addr string, pid, n, par int) error {
	before, err := rssKiB(pid)
	if err != nil {
		return err
	}
	conns := make([]*websocket.Conn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
			if err != nil {
				errs <- err
				return
			}
			if err := c.Write(ctx, websocket.MessageText, []byte(`{"cmd":"register"}`)); err != nil {
				errs <- err
				return
			}
			if _, b, err := c.Read(ctx); err != nil || !strings.Contains(string(b), `"result":"ok"`) {
				errs <- fmt.Errorf("register: %s %v", b, err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	// Let the node settle (timers, GC) before reading its memory.
	time.Sleep(2 * time.Second)
	after, err := rssKiB(pid)
	if err != nil {
		return err
	}
	fmt.Printf("%d logged-in idle connections: node RSS %d MiB -> %d MiB, %.1f KiB per connection\n",
		n, before/1024, after/1024, float64(after-before)/float64(n))
	for _, c := range conns {
		c.CloseNow()
	}
	return nil
}

func rssKiB(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
