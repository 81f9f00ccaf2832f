#!/usr/bin/env bash
# Reproduces the figures of docs/benchmarks.md on this machine: it builds
# occase, starts one redis-server and the nodes on free loopback ports, and
# runs, each in the same session so that ratios compare like with like:
#   1. redis-benchmark of the two Lua scripts one chat message costs
#      (the ceiling), on the same redis-server;
#   2. the chat scenario on two nodes, with Redis' own command counts
#      (INFO commandstats) and every process's CPU time around it, and a
#      CPU profile of node 1 taken in the middle of it;
#   3. fanout to 1,000 and 10,000 subscribers, connect, and idle.
# Every step is bounded; everything it starts is stopped on exit.
#
#   bash bench/reproduce.sh            # results in a fresh /tmp/occase-bench.* folder
#   DUR=30s USERS=200 bash bench/reproduce.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/occase-bench.XXXXXX)}
DUR=${DUR:-30s}                 # load phase of chat and fanout
WARMUP=${WARMUP:-5s}
CHAT_ARGS=${CHAT_ARGS:---users 200 --window 4}          # saturating: throughput
PACED_ARGS=${PACED_ARGS:---users 1000 --rate 2 --window 8} # well below it: latency
IDLE_USERS=${IDLE_USERS:-10000}
CONNECT_USERS=${CONNECT_USERS:-5000}
SWEEP_RATES=${SWEEP_RATES:-1 2 4 8}                        # chat/s per user, 1000 users
FANOUT_OFFER=${FANOUT_OFFER:-600000}                       # deliveries/s offered in fanout: 3x the target, so the nodes saturate
SCENARIOS=${SCENARIOS:-ceiling chat paced sweep fanout connect idle}
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "results in $OUT"

(cd "$root" && go build -o "$OUT/occase" .)
B="$OUT/occase"

. "$(dirname "$0")/lib.sh"


RP=$(freeport)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
	--protected-mode no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
REDIS=$!
pids+=("$REDIS")
waitredis "$RP"
rcli() { redis-cli -p "$RP" "$@"; }

# Nodes: rate limits and the post quota off (the bench measures the server,
# not them); node 1 serves pprof on its own loopback port.
nodes=()
urls=""
start_nodes() {
	stop_nodes
	local n=$1 i port prefix
	prefix="bench$(date +%s%N):"
	urls=""
	murls=()
	for i in $(seq "$n"); do
		port=$(freeport)
		local extra=()
		if [ "$i" = 1 ]; then PPROF=$(freeport); extra=(--pprof-addr "127.0.0.1:$PPROF"); fi
		OCCASE_CHAT_RATE=0 OCCASE_PRESENCE_RATE=0 OCCASE_REGISTER_RATE=0 OCCASE_REGISTER_PER_DAY=0 OCCASE_REGISTER_NODE_RATE=0 OCCASE_POST_QUOTA_N=1000000000 \
		OCCASE_POSTS_PER_ADDRESS=0 OCCASE_MAX_POSTS=0 OCCASE_MAX_POST_BYTES=0 OCCASE_SUBSCRIBE_RATE=0 OCCASE_READ_RATE=0 \
			OCCASE_READ_RATE_BYTES=0 OCCASE_READ_RATE_FRAMES=0 OCCASE_ABUSE_LIMIT=0 \
			"$B" serve --role db --addr "127.0.0.1:$port" --redis "127.0.0.1:$RP" \
			--redis-prefix "$prefix" --log-level error "${extra[@]}" >>"$OUT/node$i.log" 2>&1 &
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

echo "load before: $(cat /proc/loadavg)" | tee "$OUT/machine.txt"
nproc >>"$OUT/machine.txt"
redis-server --version >>"$OUT/machine.txt"

for s in $SCENARIOS; do case $s in
ceiling)
	# The two scripts exactly as broker/chat.go has them, loaded under
	# their SHA, and 1,000 users' hashes to run them on. A stored message
	# is ~300 bytes, as the chat scenario's.
	fetchsrc=$(awk '/fetchScript = newScript\("chat_fetch", `/ {f=1; sub(/.*`/,"")} f { if ($0 ~ /`\)$/) {sub(/`\)$/,""); print; exit} print }' "$root/broker/chat.go")
	STORE=$(rcli script load "$(cd "$root" && go run ./scripts/printscript)")
	FETCH=$(rcli script load "$fetchsrc")
	for i in $(seq 0 999); do printf 'HSET rb:u:{%012d} pwd x login %s\n' "$i" "$(date +%s000)"; done | rcli >/dev/null
	MEMBERS='"from":"1","cmd":"message","type":"chat","to":"2","id":1,"seq":1,"ts":1,"post_id":1,"is_sender_post":false,"msg":"'$(head -c 150 /dev/zero | tr '\0' a)'"'
	for P in 1 16; do
		redis-benchmark -p "$RP" -c 50 -P "$P" -n 400000 -r 1000 -q \
			EVALSHA "$STORE" 4 'rb:u:{__rand_int__}' 'rb:q:{__rand_int__}' 'rb:n:{__rand_int__}' 'rb:s:{__rand_int__}' "$MEMBERS" 1000 2592000000 "$(date +%s000)" 'rb:c:{__rand_int__}' PUBLISH \
			| tr "\r" "\n" | grep -a "requests per second" | tail -1 | awk -F': ' -v t="store P=$P" '{print t": "$NF}' | tee -a "$OUT/ceiling.txt"
		# The recipient's fetch, as a mailbox does once per batch: look for
		# the last written element at the head (not found here, so nothing
		# is trimmed) and read the next one.
		redis-benchmark -p "$RP" -c 50 -P "$P" -n 400000 -r 1000 -q \
			EVALSHA "$FETCH" 3 'rb:q:{__rand_int__}' 'rb:s:{__rand_int__}' 'rb:u:{__rand_int__}' 1 x 1 \
			| tr "\r" "\n" | grep -a "requests per second" | tail -1 | awk -F': ' -v t="fetch P=$P" '{print t": "$NF}' | tee -a "$OUT/ceiling.txt"
	done
	rcli eval "for _,k in ipairs(redis.call('KEYS','rb:*')) do redis.call('DEL',k) end return 0" 0 >/dev/null
	;;
chat)
	start_nodes 2
	rcli config resetstat >/dev/null
	declare -A before
	for p in "$REDIS" "${nodes[@]}"; do before[$p]=$(cputicks "$p"); done
	"$B" bench --scenario chat --url "$urls" $CHAT_ARGS --duration "$DUR" --warmup "$WARMUP" \
		--server-pid "${nodes[0]}" --server-pid "${nodes[1]}" --metrics "${murls[0]}" --metrics "${murls[1]}" --json --cpuprofile "$OUT/bench-cpu.prof" \
		>"$OUT/chat.json" 2>"$OUT/chat.progress" &
		BENCH=$!
	pids+=("$BENCH")
	sleep "$(( ${WARMUP%s} + 2 ))"
	curl -sf -o "$OUT/node1-cpu.prof" "http://127.0.0.1:$PPROF/debug/pprof/profile?seconds=15" || echo "no profile"
	wait "$BENCH" || true
	# CPU seconds (clock ticks / 100) each process used during the run.
	{
		echo "redis $(( $(cputicks "$REDIS") - ${before[$REDIS]} ))"
		echo "node1 $(( $(cputicks "${nodes[0]}") - ${before[${nodes[0]}]} ))"
		echo "node2 $(( $(cputicks "${nodes[1]}") - ${before[${nodes[1]}]} ))"
	} | awk '{printf "cpu_seconds %s %.2f\n", $1, $2/100}' >"$OUT/chat.cpu"
	python3 -c 'import json,sys; print("cpu_seconds bench %.2f" % json.load(open(sys.argv[1]))["bench_cpu_s"])' "$OUT/chat.json" >>"$OUT/chat.cpu" || true
	rcli info commandstats | grep -E 'cmdstat_(evalsha|eval|publish|hget|hincrby):' >"$OUT/chat.commandstats" || true
	go tool pprof -top -nodecount=40 "$B" "$OUT/node1-cpu.prof" >"$OUT/node1-cpu.top" 2>/dev/null || true
	go tool pprof -top -cum -nodecount=60 "$B" "$OUT/node1-cpu.prof" >"$OUT/node1-cpu.cum" 2>/dev/null || true
	go tool pprof -top -nodecount=25 "$B" "$OUT/bench-cpu.prof" >"$OUT/bench-cpu.top" 2>/dev/null || true
	;;
paced)
	start_nodes 2
	"$B" bench --scenario chat --url "$urls" $PACED_ARGS --duration "$DUR" --warmup "$WARMUP" \
		--json --quiet >"$OUT/paced.json" 2>"$OUT/paced.err" || true
	;;
sweep)
	# Latency against offered load: where does p99 cross 10 ms?
	for rate in $SWEEP_RATES; do
		start_nodes 2
		"$B" bench --scenario chat --url "$urls" --users 1000 --rate "$rate" --window 8 --duration 15s --warmup 3s \
			--json --quiet >"$OUT/sweep-$rate.json" 2>"$OUT/sweep-$rate.err" || true
	done
	;;
fanout)
	for subs in 1000 10000; do
		start_nodes 2
		# Offered: 1.5 times the target of 200,000 deliveries/s.
		rate=$(( FANOUT_OFFER / subs ))
		declare -A fb
		for p in "$REDIS" "${nodes[@]}"; do fb[$p]=$(cputicks "$p"); done
		"$B" bench --scenario fanout --url "$urls" --users "$subs" --publishers 1 --post-rate "$rate" \
			--window 64 --duration "$DUR" --warmup "$WARMUP" --drain 30s --concurrency 128 --json --quiet \
			>"$OUT/fanout-$subs.json" 2>"$OUT/fanout-$subs.err" &
		BENCH=$!
		pids+=("$BENCH")
		sleep "$(( ${WARMUP%s} + 3 ))"
		curl -sf -o "$OUT/fanout-$subs-node1-cpu.prof" "http://127.0.0.1:$PPROF/debug/pprof/profile?seconds=10" || echo "no profile"
		wait "$BENCH" || true
		go tool pprof -top -cum -nodecount=50 "$B" "$OUT/fanout-$subs-node1-cpu.prof" >"$OUT/fanout-$subs-node1-cpu.cum" 2>/dev/null || true
		{
			echo "redis $(( $(cputicks "$REDIS") - ${fb[$REDIS]} ))"
			echo "node1 $(( $(cputicks "${nodes[0]}") - ${fb[${nodes[0]}]} ))"
			echo "node2 $(( $(cputicks "${nodes[1]}") - ${fb[${nodes[1]}]} ))"
		} | awk '{printf "cpu_seconds %s %.2f\n", $1, $2/100}' >"$OUT/fanout-$subs.cpu"
		python3 -c 'import json,sys; print("cpu_seconds bench %.2f" % json.load(open(sys.argv[1]))["bench_cpu_s"])' "$OUT/fanout-$subs.json" >>"$OUT/fanout-$subs.cpu" || true
	done
	;;
connect)
	start_nodes 2
	"$B" bench --scenario connect --url "$urls" --users "$CONNECT_USERS" --concurrency 128 --duration 60s \
		--json --quiet >"$OUT/connect.json" 2>"$OUT/connect.err" || true
	;;
idle)
	start_nodes 1
	"$B" bench --scenario idle --url "$urls" --users "$IDLE_USERS" --concurrency 128 --duration 20s \
		--server-pid "${nodes[0]}" --metrics "${murls[0]}" --json --quiet >"$OUT/idle.json" 2>"$OUT/idle.err" &
	BENCH=$!
	pids+=("$BENCH")
	# While the connections are held: what the node's heap holds, after a GC.
	sleep 18
	curl -sf -o "$OUT/idle-heap.prof" "http://127.0.0.1:$PPROF/debug/pprof/heap?gc=1" || echo "no heap profile"
	curl -sf "http://127.0.0.1:$PPROF/debug/pprof/goroutine?debug=1" | head -1 >"$OUT/idle-goroutines.txt" || true
	wait "$BENCH" || true
	go tool pprof -sample_index=inuse_space -top -nodecount=25 "$B" "$OUT/idle-heap.prof" >"$OUT/idle-heap.top" 2>/dev/null || true
	;;
esac; done
stop_nodes
echo "load after: $(cat /proc/loadavg)" | tee -a "$OUT/machine.txt"
python3 "$root/bench/summarize.py" "$OUT" | tee "$OUT/summary.txt"
echo "results in $OUT"
