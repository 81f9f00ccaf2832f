#!/usr/bin/env bash
# Many idle connections over several db nodes sharing one redis-server
# (docs/benchmarks.md, "Idle memory with pings"): one bench process per
# node, because a process here may hold at most 20,000 descriptors
# (`ulimit -Hn`). Each node listens on its own port, so the 28,000
# ephemeral ports of 127.0.0.1 are counted per node, and no extra source
# address is needed while a node holds fewer. Prints each node's memory
# per connection (VmRSS growth over the hold, as the bench measures it)
# and logs every node's VmRSS (KiB) every 10 s to OUT/TAG.samples.
#
#   flock /work/wt/bench.lock scripts/bench-idle-multi.sh BINARY [nodes] [users_per_node] [hold]
#   IT=30s scripts/bench-idle-multi.sh ./occase 6 16667 60s
set -uo pipefail
B=$1
K=${2:-6}
PER=${3:-16667}
HOLD=${4:-60s}
IT=${IT:-30s}
TAG=${TAG:-multi}
OUT=${OUT:-$(mktemp -d /tmp/occase-idle-multi.XXXXXX)}
mkdir -p "$OUT"
. "$(dirname "$0")/../bench/lib.sh"
rp=$(freeport)
redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no >/dev/null 2>&1 &
rpid=$!
waitredis "$rp"
nps=()
ports=()
for i in $(seq "$K"); do
	p=$(freeport)
	OCCASE_REGISTER_RATE=0 OCCASE_REGISTER_PER_DAY=0 OCCASE_REGISTER_NODE_RATE=0 \
		"$B" serve --role db --addr "127.0.0.1:$p" --redis "127.0.0.1:$rp" --log-level error \
		--idle-timeout "$IT" >"$OUT/$TAG.node$i.log" 2>&1 &
	nps+=($!)
	ports+=("$p")
done
for p in "${ports[@]}"; do
	waitready "$p"
done
echo "load before: $(cat /proc/loadavg)"
bps=()
for i in $(seq "$K"); do
	p=${ports[$((i - 1))]}
	np=${nps[$((i - 1))]}
	"$B" bench --scenario idle --url "ws://127.0.0.1:$p/ws" --users "$PER" --concurrency 64 --duration "$HOLD" \
		--server-pid "$np" --metrics "http://127.0.0.1:$p/metrics" --json --quiet >"$OUT/$TAG.b$i.json" 2>"$OUT/$TAG.b$i.err" &
	bps+=($!)
done
(while sleep 10; do
	echo "$(date +%s) $(for np in "${nps[@]}"; do awk '/^VmRSS/{printf "%d ",$2}' "/proc/$np/status"; done)"
done) >"$OUT/$TAG.samples" 2>/dev/null &
sp=$!
wait "${bps[@]}"
kill "$sp"
echo "load after: $(cat /proc/loadavg)"
for i in $(seq "$K"); do
	python3 -c "
import json
r = json.load(open('$OUT/$TAG.b$i.json'))
s = r.get('server') or {}
print('node$i', 'connections', r.get('connections'), 'bytes/connection', round(s.get('memory_per_connection_bytes', 0)), 'errors', r.get('errors'))"
done
kill "${nps[@]}"
wait "${nps[@]}" 2>/dev/null
kill "$rpid"
wait "$rpid" 2>/dev/null
echo "samples in $OUT"
