#!/usr/bin/env bash
# Redis' own time in the commands of a login storm (INFO commandstats:
# calls, usec, usec_per_call), for two builds one after the other on one
# redis-server (docs/benchmarks.md, "Logins, session 6"). For each build:
# two fresh --role db nodes, CONFIG RESETSTAT, then a connect run (USERS
# registrations, ROUNDS login storms of them, CONC in flight). The
# registrations are counted too (one INCR and one create_user EVALSHA per
# user), in both builds alike. commandstats' usec is wall time inside the
# command, preemption included: on a shared machine read it beside the
# CPU figures of bench-login-pairs.sh, not instead of them. The load
# generator is build B.
#
#   scripts/bench-login-redis-time.sh A_BINARY B_BINARY
set -uo pipefail
A=$1
B=$2
USERS=${USERS:-2000}
ROUNDS=${ROUNDS:-6}
CONC=${CONC:-100}
OUT=${OUT:-$(mktemp -d /tmp/occase-login-redis-time.XXXXXX)}
mkdir -p "$OUT"

. "$(dirname "$0")/../bench/lib.sh"

RP=$(freeport)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
	--dir "$OUT" >"$OUT/redis.log" 2>&1 &
pids+=($!)
waitredis "$RP"

for name in A B; do
	bin=${!name} urls="" nodes=() pfx="$name$(date +%s%N):" # shared by both nodes (their secret)
	for i in 1 2; do
		port=$(freeport)
		OCCASE_CHAT_RATE=0 OCCASE_PRESENCE_RATE=0 OCCASE_REGISTER_RATE=0 OCCASE_REGISTER_PER_DAY=0 \
			OCCASE_REGISTER_NODE_RATE=0 OCCASE_READ_RATE=0 OCCASE_READ_RATE_BYTES=0 OCCASE_READ_RATE_FRAMES=0 \
			OCCASE_ABUSE_LIMIT=0 "$bin" serve --role db --addr "127.0.0.1:$port" --redis "127.0.0.1:$RP" \
			--redis-prefix "$pfx" --log-level error >>"$OUT/$name.node$i.log" 2>&1 &
		nodes+=($!)
		pids+=($!)
		urls="${urls:+$urls,}ws://127.0.0.1:$port/ws"
		waitready "$port"
	done
	redis-cli -p "$RP" CONFIG RESETSTAT >/dev/null
	"$B" bench --scenario connect --url "$urls" --users "$USERS" --concurrency "$CONC" --login-rounds "$ROUNDS" \
		--duration 120s --warmup 1s --json --quiet >"$OUT/$name.json" 2>>"$OUT/$name.err" || true
	{
		echo "== $name ($bin): $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['login']['count'], 'logins, errors', r.get('errors'))" "$OUT/$name.json")"
		redis-cli -p "$RP" INFO commandstats | grep -E 'cmdstat_(evalsha|eval|hmget|publish|lrange|subscribe|unsubscribe):'
	} | tr -d '\r' | tee -a "$OUT/summary.txt"
	for p in "${nodes[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
done
