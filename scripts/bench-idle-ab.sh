#!/usr/bin/env bash
# Node memory per idle logged-in connection with pings running, two builds
# side by side (docs/benchmarks.md, "Idle memory with pings"). Each build
# gets its own redis-server and node, and both run AT THE SAME TIME, so
# that long holds (several ping rounds) fit one locked invocation and both
# see the same machine; memory, unlike CPU, does not suffer from sharing.
# The node pings every --idle-timeout/3 (IT=15s: every 5 s); every limit
# is at its default except the registration budgets (the bench registers
# all its users from one address). The figure is the bench's: the node's
# VmRSS growth from before the first connection to the end of the hold,
# divided by the connections. Every 5 s the node's RSS, heap, GC count,
# goroutines and parked connections are logged to OUT/TAG-*.samples.
#
#   flock /work/wt/bench.lock scripts/bench-idle-ab.sh BASE_BINARY NEW_BINARY [users] [hold]
#   IT=15s OUT=/tmp/x scripts/bench-idle-ab.sh ...
set -uo pipefail
A=$1
B=$2
N=${3:-10000}
HOLD=${4:-60s}
IT=${IT:-15s}
OUT=${OUT:-$(mktemp -d /tmp/occase-idle-ab.XXXXXX)}
mkdir -p "$OUT"
. "$(dirname "$0")/../bench/lib.sh"

one() { # one BINARY TAG
	local bin=$1 tag=$2 rp p rpid np sp
	rp=$(freeport)
	p=$(freeport)
	redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no >/dev/null 2>&1 &
	rpid=$!
	waitredis "$rp"
	OCCASE_REGISTER_RATE=0 OCCASE_REGISTER_PER_DAY=0 OCCASE_REGISTER_NODE_RATE=0 \
		"$bin" serve --role db --addr "127.0.0.1:$p" --redis "127.0.0.1:$rp" --log-level error \
		--idle-timeout "$IT" >"$OUT/$tag.node.log" 2>&1 &
	np=$!
	waitready "$p"
	(while kill -0 "$np" 2>/dev/null; do
		m=$(curl -sf "http://127.0.0.1:$p/metrics")
		echo "$(date +%s) rss_kb=$(awk '/^VmRSS/{print $2}' "/proc/$np/status") $(echo "$m" | awk '
			/^go_memstats_heap_alloc_bytes /{printf "heapalloc=%.1fMB ",$2/1e6}
			/^go_memstats_heap_inuse_bytes /{printf "heapinuse=%.1fMB ",$2/1e6}
			/^go_memstats_heap_released_bytes /{printf "released=%.1fMB ",$2/1e6}
			/^go_memstats_stack_inuse_bytes /{printf "stack=%.1fMB ",$2/1e6}
			/^go_gc_duration_seconds_count /{printf "gc=%d ",$2}
			/^go_goroutines /{printf "g=%d ",$2}
			/^occase_connections_parked /{printf "parked=%d ",$2}
			/^occase_parked_pongs_total /{printf "pongs=%d ",$2}')"
		sleep 5
	done) >"$OUT/$tag.samples" 2>/dev/null &
	sp=$!
	"$bin" bench --scenario idle --url "ws://127.0.0.1:$p/ws" --users "$N" --concurrency 128 --duration "$HOLD" \
		--server-pid "$np" --metrics "http://127.0.0.1:$p/metrics" --json --quiet >"$OUT/$tag.json" 2>"$OUT/$tag.err"
	kill "$np"
	wait "$np" 2>/dev/null
	kill "$sp" "$rpid" 2>/dev/null
	wait "$rpid" 2>/dev/null
	python3 -c "
import json
r = json.load(open('$OUT/$tag.json'))
s = r.get('server') or {}
print('$tag', 'connections', r.get('connections'), 'bytes/connection', round(s.get('memory_per_connection_bytes', 0)), 'errors', r.get('errors'))"
}

echo "load before: $(cat /proc/loadavg)"
one "$A" base &
a=$!
one "$B" new &
b=$!
wait $a $b
echo "load after: $(cat /proc/loadavg)"
echo "samples in $OUT"
