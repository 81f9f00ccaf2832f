#!/usr/bin/env bash
# Server CPU per login of two builds, measured in alternating pairs with
# both builds' nodes up at once (docs/benchmarks.md, "Logins, session 4").
# One real redis-server; two nodes of build A and two of build B (each
# pair on its own key prefix); then PAIRS times: a short connect run
# against A's nodes, then one against B's. Each run registers USERS and
# then logs them in ROUNDS times (each user on the other node), and the
# bench reads both nodes' and Redis' CPU from /proc around the login
# storms alone. On a shared machine the load changes from minute to
# minute; runs seconds apart see the same load, so the ratio of each pair
# is what to read, and its median. The load generator is build B (it must
# have --login-rounds) and is never counted.
#
#   scripts/bench-login-pairs.sh A_BINARY B_BINARY [pairs]
#   ROUNDS=6 USERS=2000 CONC=100 ENV_B=GOMAXPROCS=1 scripts/bench-login-pairs.sh ...
#
# TASKSET=1 pins Redis and the nodes to CPU 0 and the load generator to
# CPU 1, so the load generator does not share the servers' core
# (docs/benchmarks.md, "Logins, session 7").
set -uo pipefail
A=$1
B=$2
PAIRS=${3:-6}
ROUNDS=${ROUNDS:-6}
USERS=${USERS:-2000}
CONC=${CONC:-100}
OUT=${OUT:-$(mktemp -d /tmp/occase-login-pairs.XXXXXX)}
mkdir -p "$OUT"
srv=() ; gen=()
if [ "${TASKSET:-0}" = 1 ]; then srv=(taskset -c 0); gen=(taskset -c 1); fi

. "$(dirname "$0")/../bench/lib.sh"

RP=$(freeport)
"${srv[@]}" redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
	--dir "$OUT" >"$OUT/redis.log" 2>&1 &
REDIS=$!
pids+=("$REDIS")
waitredis "$RP"

declare -A URLS NODES
for name in A B; do
	bin=${!name} urls="" nn="" pfx="$name$(date +%s%N):"
	envv=ENV_$name
	for i in 1 2; do
		port=$(freeport)
		env ${!envv:-OCCASE_PAIRS=1} OCCASE_CHAT_RATE=0 OCCASE_PRESENCE_RATE=0 OCCASE_REGISTER_RATE=0 \
			OCCASE_REGISTER_PER_DAY=0 OCCASE_REGISTER_NODE_RATE=0 OCCASE_READ_RATE=0 OCCASE_READ_RATE_BYTES=0 \
			OCCASE_READ_RATE_FRAMES=0 OCCASE_ABUSE_LIMIT=0 \
			"${srv[@]}" "$bin" serve --role db --addr "127.0.0.1:$port" --redis "127.0.0.1:$RP" --redis-prefix "$pfx" \
			--log-level error >>"$OUT/$name.node$i.log" 2>&1 &
		pids+=($!)
		nn="$nn --server-pid $!"
		urls="${urls:+$urls,}ws://127.0.0.1:$port/ws"
		waitready "$port"
	done
	URLS[$name]=$urls
	NODES[$name]=$nn
done

for p in $(seq "$PAIRS"); do
	for name in A B; do
		# shellcheck disable=SC2086
		"${gen[@]}" "$B" bench --scenario connect --url "${URLS[$name]}" --users "$USERS" --concurrency "$CONC" \
			--login-rounds "$ROUNDS" --duration 120s --warmup 1s ${NODES[$name]} --server-pid "$REDIS" \
			--json --quiet >"$OUT/$name.$p.json" 2>>"$OUT/$name.err" || true
	done
done

python3 - "$OUT" "$PAIRS" "$(uptime)" <<'PY' | tee "$OUT/summary.txt"
import json, statistics as st, sys
out, pairs, up = sys.argv[1], int(sys.argv[2]), sys.argv[3]
res = {"A": [], "B": []}
for p in range(1, pairs + 1):
    for n in "AB":
        r = json.load(open(f"{out}/{n}.{p}.json"))
        c = r["login_cpu"]
        res[n].append((c[0]["per_op_us"] + c[1]["per_op_us"], c[2]["per_op_us"], r["login"]["per_s"], r.get("errors") or {}))
for n in "AB":
    print(n, "server CPU us/login (nodes+redis):", " ".join(f"{a + b:.0f}({a:.0f}+{b:.0f})" for a, b, _, _ in res[n]),
          "| logins/s:", " ".join(f"{s:.0f}" for _, _, s, _ in res[n]), "| errors:", [e for *_, e in res[n] if e])
tot = [(b[0] + b[1]) / (a[0] + a[1]) for a, b in zip(res["A"], res["B"])]
nod = [b[0] / a[0] for a, b in zip(res["A"], res["B"])]
print("pair ratios B/A:", " ".join(f"{x:.2f}" for x in tot))
print(f"median A {st.median(a + b for a, b, _, _ in res['A']):.1f} us, B {st.median(a + b for a, b, _, _ in res['B']):.1f} us; "
      f"median ratio {st.median(tot):.3f} (nodes only {st.median(nod):.3f}); load {up.split('average:')[-1].strip()}")
PY
