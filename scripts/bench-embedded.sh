#!/usr/bin/env bash
# The embedded server against a real Redis (docs/benchmarks.md, "Embedded
# broker speed"): one db node per run, on a real redis-server or on
# `--redis embedded --embedded-snapshot ""`, limits off, runs alternated.
# Each RUN is name:binary:broker (broker real or embedded); the load
# generator is BENCH (default: the first binary). Node (and redis-server)
# CPU from /proc/<pid>/stat.
#
#   scripts/bench-embedded.sh new:/tmp/occase:real new-emb:/tmp/occase:embedded [...]
#   SCENARIO=fanout ROUNDS=2 DUR=12s scripts/bench-embedded.sh ...
set -euo pipefail
ROUNDS=${ROUNDS:-2}
DUR=${DUR:-12s}
WARMUP=${WARMUP:-3s}
SCENARIO=${SCENARIO:-chat}
OUT=${OUT:-$(mktemp -d /tmp/occase-embedded.XXXXXX)}
mkdir -p "$OUT"
case $SCENARIO in
chat) LOAD=(--scenario chat --users "${USERS:-100}" --no-receipts --window "${WINDOW:-8}") ;;
fanout) LOAD=(--scenario fanout --users "${USERS:-1000}" --publishers 1 --post-rate 0 --window "${WINDOW:-10}") ;;
*) echo "SCENARIO: chat or fanout" >&2; exit 2 ;;
esac
BENCH=${BENCH:-$(echo "$1" | cut -d: -f2)}

. "$(dirname "$0")/../bench/lib.sh"

RP=$(freeport)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
	--protected-mode no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
REDIS=$!
pids+=("$REDIS")
waitredis "$RP"

run() { # name binary real|embedded
	local name=$1 bin=$2 broker=$3 port node redis_flag
	port=$(freeport)
	if [ "$broker" = real ]; then
		redis_flag=(--redis "127.0.0.1:$RP" --redis-prefix "e$(date +%s%N):")
	else
		redis_flag=(--redis embedded --embedded-snapshot "")
	fi
	OCCASE_CHAT_RATE=0 OCCASE_PRESENCE_RATE=0 OCCASE_REGISTER_RATE=0 OCCASE_REGISTER_PER_DAY=0 OCCASE_REGISTER_NODE_RATE=0 \
		OCCASE_READ_RATE=0 OCCASE_READ_RATE_BYTES=0 OCCASE_READ_RATE_FRAMES=0 OCCASE_ABUSE_LIMIT=0 \
		OCCASE_POST_QUOTA_N=1000000000 OCCASE_POSTS_PER_ADDRESS=0 OCCASE_MAX_POSTS=0 OCCASE_MAX_POST_BYTES=0 OCCASE_SUBSCRIBE_RATE=0 \
		"$bin" serve --role db --addr "127.0.0.1:$port" "${redis_flag[@]}" \
		--log-level error ${EXTRA:-} >>"$OUT/$name.node.log" 2>&1 &
	node=$!
	pids+=("$node")
	waitready "$port" || { tail "$OUT/$name.node.log" >&2; exit 1; }
	local r0 n0 r1 n1
	r0=$(cputicks "$REDIS"); n0=$(cputicks "$node")
	"$BENCH" bench "${LOAD[@]}" --url "ws://127.0.0.1:$port/ws" --duration "$DUR" --warmup "$WARMUP" \
		--json --quiet >"$OUT/$name.json" 2>"$OUT/$name.err" || true
	r1=$(cputicks "$REDIS"); n1=$(cputicks "$node")
	kill "$node"; wait "$node" 2>/dev/null || true
	python3 - "$name" "$OUT/$name.json" $((r1 - r0)) $((n1 - n0)) "$broker" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
name, rep, redis, node, broker, load = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
n = sum(rep.get("delivered_by_type", {}).values()) or (rep.get("messages") or {}).get("delivered") or 1
tick = 1e6 / 100  # us per clock tick (USER_HZ 100)
m = rep.get("messages") or {}
lat = rep.get("latency_ms") or {}
cpu = node + (redis if broker == "real" else 0)
print(f"{name}: {rep.get('delivered_per_s', 0):.0f}/s delivered, p50 {lat.get('p50', 0):.0f} ms p99 {lat.get('p99', 0):.0f} ms, "
      f"lost {m.get('lost', '?')} dup {m.get('duplicates', '?')} ooo {m.get('out_of_order', '?')}; "
      f"server CPU {cpu * tick / n:.1f} us/delivery (node {node * tick / n:.1f}, redis-server {redis * tick / n if broker == 'real' else 0:.1f}); load {load}")
PY
}

for r in $(seq "$ROUNDS"); do
	for spec in "$@"; do
		IFS=: read -r name bin broker <<<"$spec"
		run "$name$r" "$bin" "$broker"
	done
done
echo "results in $OUT"
