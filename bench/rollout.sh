#!/usr/bin/env bash
# Checks the documented rollout (docs/operations.md): two db nodes on one
# redis-server, `occase bench --scenario chat --reconnect` across them, and
# each node in turn drained with SIGTERM and started again mid-run. The
# report must say lost 0, duplicated 0. Run with RECONNECT= (empty) to see
# what a bench that does not reconnect reports instead.
#
#   bash bench/rollout.sh            # about 40 s; results in /tmp/occase-rollout.*
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/occase-rollout.XXXXXX)}
USERS=${USERS:-200}
RATE=${RATE:-2}
DUR=${DUR:-30s}
RECONNECT=${RECONNECT---reconnect}
mkdir -p "$OUT"
echo "results in $OUT"
(cd "$root" && go build -o "$OUT/occase" .)
B="$OUT/occase"
. "$(dirname "$0")/lib.sh"


RP=$(freeport)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
	--protected-mode no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
pids+=($!)
waitredis "$RP"

SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ports=("$(freeport)" "$(freeport)")
node=()
start() { # start node $1
	OCCASE_CHAT_RATE=0 OCCASE_PRESENCE_RATE=0 OCCASE_REGISTER_RATE=0 OCCASE_REGISTER_PER_DAY=0 OCCASE_REGISTER_NODE_RATE=0 \
		"$B" serve --role db --addr "127.0.0.1:${ports[$1]}" --redis "127.0.0.1:$RP" \
		--redis-prefix rollout: --secret "$SECRET" --drain-timeout 10s --log-level warn \
		>>"$OUT/node$1.log" 2>&1 &
	node[$1]=$!
	pids+=($!)
	waitready "${ports[$1]}" && return
	echo "node $1 did not become ready" >&2
	exit 1
}
start 0
start 1

# shellcheck disable=SC2086
"$B" bench --scenario chat $RECONNECT --url "ws://127.0.0.1:${ports[0]}/ws,ws://127.0.0.1:${ports[1]}/ws" \
	--users "$USERS" --rate "$RATE" --duration "$DUR" --warmup 1s --drain 30s --quiet \
	>"$OUT/bench.txt" 2>&1 &
BENCH=$!

for i in 0 1; do
	sleep 8
	t0=$(date +%s.%N)
	kill -TERM "${node[$i]}"
	wait "${node[$i]}" || true
	echo "node $i drained in $(echo "$(date +%s.%N) - $t0" | bc) s; starting it again" | tee -a "$OUT/rollout.txt"
	start "$i"
done
wait "$BENCH" || echo "bench exited $?"
cat "$OUT/bench.txt"
