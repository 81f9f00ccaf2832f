package broker

import (
	"context"
	"sort"
	"strconv"
	"strings"
)

// Memory is what one Redis server says of its memory (INFO memory).
type Memory struct {
	Addr string
	Used int64 // used_memory: what maxmemory is compared with
	Max  int64 // maxmemory; 0: unbounded
}

// Memory asks every Redis server the client knows (one, the Sentinel's
// master, or each cluster node) for its memory. Servers that do not
// answer are left out; the embedded server has no INFO memory and yields
// nothing.
func (c *Client) Memory(ctx context.Context) []Memory {
	if c.mini != nil {
		return nil
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	nodes := c.rc.Nodes()
	addrs := make([]string, 0, len(nodes))
	for a := range nodes {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	var out []Memory
	for _, a := range addrs {
		n := nodes[a]
		info, err := n.Do(ctx, n.B().Info().Section("memory").Build()).ToString()
		if err != nil {
			continue
		}
		m := Memory{Addr: a}
		m.Used, _ = infoInt(info, "used_memory")
		m.Max, _ = infoInt(info, "maxmemory")
		out = append(out, m)
	}
	return out
}

// infoInt reads a "name:value" line of an INFO reply.
func infoInt(info, name string) (int64, bool) {
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == name {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
