#!/usr/bin/env bash
# Fan-out latency against --write-delay (issue 13 item 4): runs the fanout
# scenario several times on one redis-server, two fresh nodes per run,
# alternating the runs given in RUNS, and prints one line per run: the
# deliveries/s in the measured window, a live post's end-to-end latency
# (p50/p99/p99.9, stamped by the publisher when it writes the post, read
# by each subscriber), the posts the publisher actually sent against those
# offered, and CPU per delivery over the measured window only (nodes +
# Redis from /proc, and the bench's own) when the bench has --cpu-pid.
#
#   RUNS="d50:/tmp/occase:50ms d0:/tmp/occase:0s" RATE=200 SUBS=1000 \
#     flock /work/wt/bench.lock bash scripts/bench-fanout-delay.sh
#
# RUNS: label:bench-binary:write-delay[:server-binary], run in order
# (repeat for alternation); the nodes' binary defaults to SERVER, itself
# by default the first run's bench binary.
# Each run is DUR long (WARMUP of it left out); keep a locked invocation
# under 4 minutes.
set -euo pipefail

RUNS=${RUNS:?label:bench:write-delay ...}
SUBS=${SUBS:-1000}
RATE=${RATE:-200}      # posts/s from one publisher: RATE*SUBS deliveries/s offered
WINDOW=${WINDOW:-64}   # posts in flight at most
DUR=${DUR:-12s}
WARMUP=${WARMUP:-3s}
OUT=${OUT:-$(mktemp -d /tmp/occase-fanout.XXXXXX)}
PROFILE=${PROFILE:-}   # a label: take a 5 s CPU profile of node 1 in that run
first=${RUNS%% *}; first=${first#*:}; SERVER=${SERVER:-${first%%:*}}
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

. "$(dirname "$0")/../bench/lib.sh"

RP=$(freeport)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
	--protected-mode no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
REDIS=$!
pids+=("$REDIS")
waitredis "$RP"

nodes=()
urls=""
start_nodes() {
	local delay=$1 bin=$2 i port prefix extra
	prefix="fan$(date +%s%N):"
	urls=""
	nodes=()
	murls=()
	for i in 1 2; do
		port=$(freeport)
		extra=()
		if [ "$i" = 1 ]; then PPROF=$(freeport); extra=(--pprof-addr "127.0.0.1:$PPROF"); fi
		OCCASE_CHAT_RATE=0 OCCASE_PRESENCE_RATE=0 OCCASE_REGISTER_RATE=0 OCCASE_REGISTER_PER_DAY=0 OCCASE_REGISTER_NODE_RATE=0 OCCASE_POST_QUOTA_N=1000000000 \
		OCCASE_POSTS_PER_ADDRESS=0 OCCASE_MAX_POSTS=0 OCCASE_MAX_POST_BYTES=0 OCCASE_SUBSCRIBE_RATE=0 OCCASE_READ_RATE=0 \
			OCCASE_READ_RATE_BYTES=0 OCCASE_READ_RATE_FRAMES=0 OCCASE_ABUSE_LIMIT=0 OCCASE_WRITE_DELAY="$delay" \
			"$bin" serve --role db --addr "127.0.0.1:$port" --redis "127.0.0.1:$RP" \
			--redis-prefix "$prefix" --log-level error "${extra[@]}" >>"$OUT/nodes.log" 2>&1 &
		nodes+=($!)
		pids+=($!)
		urls="${urls:+$urls,}ws://127.0.0.1:$port/ws"
		murls+=("http://127.0.0.1:$port/metrics")
		waitready "$port"
	done
}
stop_nodes() {
	for p in "${nodes[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	nodes=()
}

echo "server $SERVER (unless a run names its own); $SUBS subscribers, $RATE posts/s offered ($((RATE * SUBS)) deliveries/s), window $WINDOW, $DUR (warm-up $WARMUP); results in $OUT"
k=0
for spec in $RUNS; do
	k=$((k + 1))
	IFS=: read -r label bench delay server <<<"$spec"
	server=${server:-$SERVER}
	start_nodes "$delay" "$server"
	cpuflags=()
	if "$bench" bench --help 2>&1 | grep -q -- '--cpu-pid'; then
		cpuflags=(--cpu-pid "${nodes[0]}" --cpu-pid "${nodes[1]}" --cpu-pid "$REDIS")
	fi
	load0=$(cut -d' ' -f1-3 /proc/loadavg)
	"$bench" bench --scenario fanout --url "$urls" --users "$SUBS" --publishers 1 --post-rate "$RATE" \
		--window "$WINDOW" --duration "$DUR" --warmup "$WARMUP" --drain 20s --concurrency 128 \
		"${cpuflags[@]}" --json --quiet >"$OUT/$k-$label.json" 2>"$OUT/$k-$label.err" &
	B=$!
	pids+=("$B")
	if [ "$label" = "$PROFILE" ]; then
		sleep "$(( ${WARMUP%s} + 3 ))"
		curl -sf -o "$OUT/$k-$label-node1.prof" "http://127.0.0.1:$PPROF/debug/pprof/profile?seconds=5" || true
	fi
	wait "$B" || true
	# Frames per write(2), both nodes, over the whole run.
	fpw=$(for u in "${murls[@]}"; do curl -sf "$u"; done | awk '/^occase_frames_out_total /{f+=$2} /^occase_socket_writes_total /{w+=$2} END{if (w) printf "%.1f", f/w; else print "-"}')
	stop_nodes
	python3 - "$OUT/$k-$label.json" "$label" "$delay" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)" "$RATE" "$fpw" <<'EOF'
import json, sys
f, label, delay, l0, l1, rate, fpw = sys.argv[1:]
r = json.load(open(f))
m, lat = r.get("messages", {}), r.get("latency_ms") or {}
w = r.get("window_cpu") or {}
win = r.get("window_s") or 0
srv = "%.2f" % w["servers_us_per_delivery"] if w else "-"
bch = "%.2f" % w["bench_us_per_delivery"] if w else "-"
whole = r["bench_cpu_s"] / m["delivered"] * 1e6 if m.get("delivered") else 0
print(f"{label:6s} delay={delay:5s} {r.get('delivered_per_s', 0):9.0f} deliv/s  p50 {lat.get('p50', 0):7.1f} ms  p99 {lat.get('p99', 0):7.1f} ms  p99.9 {lat.get('p99_9', 0):7.1f} ms  "
      f"posts sent {m.get('sent')} (offered {float(rate) * r['duration_s']:.0f})  lost {m.get('lost')} dup {m.get('duplicates')} ooo {m.get('out_of_order')}  "
      f"cpu/deliv servers {srv} us bench {bch} us (bench whole run {whole:.2f} us)  frames/write {fpw}  stall {r.get('max_stall_ms', 0):.0f} ms  load {l0} -> {l1}  errors {r.get('errors')}")
EOF
	if [ -f "$OUT/$k-$label-node1.prof" ]; then
		go tool pprof -top -cum -nodecount=45 "$server" "$OUT/$k-$label-node1.prof" >"$OUT/$k-$label-node1.cum" 2>/dev/null || true
	fi
done
