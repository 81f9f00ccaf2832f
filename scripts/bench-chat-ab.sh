#!/usr/bin/env bash
# Server CPU and Redis script calls per delivered chat message, two builds
# side by side in one session (docs/benchmarks.md, "Chat: one script per
# message"). One real redis-server; for each build in turn, two fresh nodes
# and the chat scenario without receipts or typing (--no-receipts), so a
# delivery is exactly one message and its server_ack. Around each run: the
# CPU time of redis-server and both nodes from /proc/<pid>/stat, and Redis'
# INFO commandstats (reset before the run). The load generator is always
# the AFTER build (it has --no-receipts); it never counts as server CPU.
#
#   scripts/bench-chat-ab.sh BEFORE_BINARY AFTER_BINARY [rounds]
#   DUR=25s USERS=100 WINDOW=10 TASKSET=1 scripts/bench-chat-ab.sh ...
#
# ARGS_A, ARGS_B: extra `occase serve` flags for the nodes of each build
# (e.g. the same binary twice with different --redis-flush-delay).
#
# TASKSET=1 pins Redis and the nodes to CPU 0 and the bench to CPU 1, so
# the load generator does not steal from what is measured.
set -euo pipefail
A=$1
B=$2
ROUNDS=${3:-2}
DUR=${DUR:-25s}
WARMUP=${WARMUP:-3s}
USERS=${USERS:-100}
WINDOW=${WINDOW:-10}
OUT=${OUT:-$(mktemp -d /tmp/occase-chat-ab.XXXXXX)}
mkdir -p "$OUT"
srv=() ; gen=()
if [ "${TASKSET:-0}" = 1 ]; then srv=(taskset -c 0); gen=(taskset -c 1); fi

. "$(dirname "$0")/../bench/lib.sh"

RP=$(freeport)
"${srv[@]}" redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
	--protected-mode no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
REDIS=$!
pids+=("$REDIS")
waitredis "$RP"

run() { # name binary extra-flags
	local name=$1 bin=$2 extra=$3 i port nodes=() urls="" prefix
	prefix="ab$(date +%s%N):" # one per run, shared by its two nodes
	for i in 1 2; do
		port=$(freeport)
		OCCASE_CHAT_RATE=0 OCCASE_PRESENCE_RATE=0 OCCASE_REGISTER_RATE=0 OCCASE_REGISTER_PER_DAY=0 OCCASE_REGISTER_NODE_RATE=0 \
			OCCASE_READ_RATE=0 OCCASE_READ_RATE_BYTES=0 OCCASE_READ_RATE_FRAMES=0 OCCASE_ABUSE_LIMIT=0 \
			"${srv[@]}" "$bin" serve --role db --addr "127.0.0.1:$port" --redis "127.0.0.1:$RP" \
			--redis-prefix "$prefix" --log-level error $extra >>"$OUT/$name.node$i.log" 2>&1 &
		nodes+=($!)
		pids+=($!)
		urls="${urls:+$urls,}ws://127.0.0.1:$port/ws"
		waitready "$port"
	done
	redis-cli -p "$RP" config resetstat >/dev/null
	local r0 n10 n20
	r0=$(cputicks "$REDIS"); n10=$(cputicks "${nodes[0]}"); n20=$(cputicks "${nodes[1]}")
	"${gen[@]}" "$B" bench --scenario chat --url "$urls" --users "$USERS" --window "$WINDOW" --no-receipts \
		--duration "$DUR" --warmup "$WARMUP" --json --quiet >"$OUT/$name.json" 2>"$OUT/$name.err" || true
	local r1 n11 n21
	r1=$(cputicks "$REDIS"); n11=$(cputicks "${nodes[0]}"); n21=$(cputicks "${nodes[1]}")
	redis-cli -p "$RP" info commandstats | tr -d '\r' >"$OUT/$name.commandstats"
	for p in "${nodes[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
	python3 - "$name" "$OUT/$name.json" "$OUT/$name.commandstats" $((r1 - r0)) $((n11 - n10)) $((n21 - n20)) <<'EOF' | tee -a "$OUT/summary.txt"
import json, re, sys
name, rep, cs, redis, n1, n2 = sys.argv[1], json.load(open(sys.argv[2])), open(sys.argv[3]).read(), *map(int, sys.argv[4:])
msgs = rep["delivered_by_type"]["chat"]
tick = 1e6 / 100  # us per clock tick (USER_HZ 100)
calls = {m[0]: (int(m[1]), float(m[2])) for m in re.findall(r"cmdstat_(\w+):calls=(\d+),usec=(\d+)", cs)}
scripts = sum(calls.get(k, (0, 0))[0] for k in ("evalsha", "eval"))
script_us = sum(calls.get(k, (0, 0))[1] for k in ("evalsha", "eval"))
m = rep.get("messages", {})
print(f"{name}: {msgs} msgs, {rep['delivered_per_s']:.0f}/s, lost {m.get('lost', '?')} dup {m.get('duplicates', '?')} ooo {m.get('out_of_order', '?')}; "
      f"server CPU {(redis + n1 + n2) * tick / msgs:.1f} us/msg (redis {redis * tick / msgs:.1f}, nodes {(n1 + n2) * tick / msgs:.1f}); "
      f"scripts {scripts / msgs:.2f}/msg at {script_us / max(scripts, 1):.1f} us each (redis-side {script_us / msgs:.1f} us/msg)")
EOF
}

for r in $(seq "$ROUNDS"); do
	run "before$r" "$A" "${ARGS_A:-}"
	run "after$r" "$B" "${ARGS_B:-}"
done
echo "results in $OUT"
