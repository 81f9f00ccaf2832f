#!/usr/bin/env bash
# Server CPU and Redis commands per login, two builds side by side in one
# session (docs/benchmarks.md, "Logins (issue 13 item 2, session 3)"). One
# real redis-server; for each build in turn, two fresh nodes and the
# connect scenario: USERS registrations, then ROUNDS login storms of the
# same users (each user logs in on the other node), CONC in flight. The
# bench reads the CPU time of both nodes and of redis-server from /proc
# around the login storms alone (registrations left out), and Redis' INFO
# commandstats over the same span. The load generator is always the AFTER
# build (it has --login-rounds); it never counts as server CPU.
#
#   scripts/bench-login-ab.sh BEFORE_BINARY AFTER_BINARY [rounds]
#   USERS=2000 CONC=100 ROUNDS=10 scripts/bench-login-ab.sh ...
#
# PPROF=1 starts node 1 of each run with --pprof-addr and takes a CPU
# profile of it over PPROF_S seconds from the first login, and its
# allocation profile before and after that (saved in $OUT).
set -euo pipefail
A=$1
B=$2
BENCH=${BENCH:-$B} # the load generator: needs --login-rounds
REPEAT=${3:-2}
USERS=${USERS:-2000}
CONC=${CONC:-100}
ROUNDS=${ROUNDS:-10}
OUT=${OUT:-$(mktemp -d /tmp/occase-login-ab.XXXXXX)}
mkdir -p "$OUT"

. "$(dirname "$0")/../bench/lib.sh"

RP=$(freeport)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
	--protected-mode no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
REDIS=$!
pids+=("$REDIS")
waitredis "$RP"

run() { # name binary
	local name=$1 bin=$2 i port nodes=() urls="" prefix pp="" prof=""
	prefix="login$(date +%s%N):" # one per run, shared by its two nodes
	for i in 1 2; do
		port=$(freeport)
		local extra=""
		if [ "${PPROF:-0}" = 1 ] && [ "$i" = 1 ]; then pp=$(freeport); extra="--pprof-addr 127.0.0.1:$pp"; fi
		OCCASE_CHAT_RATE=0 OCCASE_PRESENCE_RATE=0 OCCASE_REGISTER_RATE=0 OCCASE_REGISTER_PER_DAY=0 OCCASE_REGISTER_NODE_RATE=0 \
			OCCASE_READ_RATE=0 OCCASE_READ_RATE_BYTES=0 OCCASE_READ_RATE_FRAMES=0 OCCASE_ABUSE_LIMIT=0 \
			"$bin" serve --role db --addr "127.0.0.1:$port" --redis "127.0.0.1:$RP" \
			--redis-prefix "$prefix" --log-level error $extra >>"$OUT/$name.node$i.log" 2>&1 &
		nodes+=($!)
		pids+=($!)
		urls="${urls:+$urls,}ws://127.0.0.1:$port/ws"
		waitready "$port"
	done
	if [ -n "$pp" ]; then
		# Starts once the registrations are done (the bench's dial and
		# register storms take about USERS/1000 s each).
		(sleep "${PPROF_DELAY:-3}"; curl -s "http://127.0.0.1:$pp/debug/pprof/allocs" -o "$OUT/$name.allocs0.pprof"
			curl -s "http://127.0.0.1:$pp/debug/pprof/profile?seconds=${PPROF_S:-10}" -o "$OUT/$name.cpu.pprof"
			curl -s "http://127.0.0.1:$pp/debug/pprof/allocs" -o "$OUT/$name.allocs.pprof") &
		prof=$!
	fi
	"$BENCH" bench --scenario connect --url "$urls" --users "$USERS" --concurrency "$CONC" --login-rounds "$ROUNDS" \
		--duration 120s --warmup 1s --server-pid "${nodes[0]}" --server-pid "${nodes[1]}" --server-pid "$REDIS" \
		--redis-addr "127.0.0.1:$RP" --json --quiet >"$OUT/$name.json" 2>"$OUT/$name.err" || true
	if [ -n "$prof" ]; then wait "$prof" || true; fi
	for p in "${nodes[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
	python3 - "$name" "$OUT/$name.json" "$(uptime)" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
name, rep, up = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
cpu = rep.get("login_cpu", [])
lg = rep.get("login", {})
nodes = sum(c["per_op_us"] for c in cpu[:2]); redis = cpu[2]["per_op_us"] if len(cpu) > 2 else float("nan")
rc = rep.get("login_redis_calls", {})
scripts = rc.get("evalsha", 0) + rc.get("eval", 0)
other = sum(v for k, v in rc.items() if k not in ("evalsha", "eval", "info", "config|resetstat"))
print(f"{name}: {lg.get('count')} logins, {lg.get('per_s', 0):.0f}/s; server CPU {nodes + redis:.1f} us/login "
      f"(nodes {nodes:.1f}, redis {redis:.1f}); redis per login: {scripts:.2f} scripts + {other:.2f} other "
      f"{ {k: round(v, 2) for k, v in sorted(rc.items())} }; errors {rep.get('errors')}; load {up.split('average:')[-1].strip()}")
PY
}

for r in $(seq "$REPEAT"); do
	run "before$r" "$A"
	run "after$r" "$B"
done
echo "results in $OUT"
