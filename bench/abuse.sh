#!/usr/bin/env bash
# Shows occase under attack (issue 10): builds occase, starts a real
# redis-server and one node of role all (db + img) on free loopback ports,
# with the server's own default limits (nothing turned off), and runs
# `occase bench --scenario abuse`: the legitimate chat alone for $DUR, then
# again for $DUR while every kind of hostile client attacks. About 60 s in
# all with the defaults. Everything it starts is stopped on exit.
#
#   bash bench/abuse.sh                  # results in a fresh /tmp/occase-abuse.* folder
#   DUR=10s ATTACKS=flood,fields bash bench/abuse.sh
#   EXTRA_SERVE="--chat-rate 20" bash bench/abuse.sh
#   TASKSET=1 bash bench/abuse.sh        # node and Redis on CPU 0, the bench on CPU 1
#
# TASKSET=1 keeps the load generator (the attackers above all: the bench's
# own CPU is in the report) from taking the CPU of what is measured.
#
# The hostile clients use source addresses all over 127.0.0.0/8 (one /16
# per kind), so the node must see the peer address: no proxy in front.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/occase-abuse.XXXXXX)}
DUR=${DUR:-20s}                    # each phase's chat load
USERS=${USERS:-100}                # legitimate users (pairs)
RATE=${RATE:-2}                    # chat messages per second per user
ATTACKS=${ATTACKS:-flood=1,fields=1,subscribe=8,register=8,publish=8,upload=80,scan=8}
ATTACK_RATE=${ATTACK_RATE:-0}      # per hostile client; 0: as fast as the answers come
STORED_POSTS=${STORED_POSTS:-10000}
# The setup (1,000 accounts to seed the stored posts, then the legitimate
# users) needs more sign-ups than a node's default budget (20/s, burst
# 200), so the node takes a burst of 3,000; the registration storm still
# meets that budget once the setup has used it.
EXTRA_SERVE=${EXTRA_SERVE:---register-node-rate 20 --register-node-burst 3000}
EXTRA_BENCH=${EXTRA_BENCH:-}
srv=() ; gen=()
if [ "${TASKSET:-0}" = 1 ]; then srv=(taskset -c 0); gen=(taskset -c 1); fi
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "results in $OUT"

(cd "$root" && go build -o "$OUT/occase" .)
B="$OUT/occase"
NODE_BIN=${NODE_BIN:-$B}           # the binary that serves (default: the one just built, which also benches)

. "$(dirname "$0")/lib.sh"


RP=$(freeport)
"${srv[@]}" redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
	--protected-mode no --dir "$OUT" >"$OUT/redis.log" 2>&1 &
pids+=($!)
waitredis "$RP"

PORT=$(freeport)
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$OUT/images"
# shellcheck disable=SC2086
"${srv[@]}" "$NODE_BIN" serve --role all --addr "127.0.0.1:$PORT" --redis "127.0.0.1:$RP" \
	--redis-prefix "abuse$(date +%s):" --image-key "$KEY" --image-dir "$OUT/images" \
	--log-level error $EXTRA_SERVE >"$OUT/node.log" 2>&1 &
NODE=$!
pids+=("$NODE")
waitready "$PORT"

echo "load before: $(cat /proc/loadavg), $(nproc) CPUs, TASKSET=${TASKSET:-0}, $(redis-server --version | cut -d' ' -f3)" | tee "$OUT/machine.txt"
git -C "$root" log -1 --format='code: %h %s' | tee -a "$OUT/machine.txt"
[ "$NODE_BIN" = "$B" ] || echo "node binary: $NODE_BIN" | tee -a "$OUT/machine.txt"

# shellcheck disable=SC2086
"${gen[@]}" "$B" bench --scenario abuse --url "ws://127.0.0.1:$PORT/ws" \
	--users "$USERS" --rate "$RATE" --window 8 --duration "$DUR" --warmup 2s --drain 20s \
	--attacks "$ATTACKS" --attack-rate "$ATTACK_RATE" --attack-ramp 3s \
	--stored-posts "$STORED_POSTS" --source-addrs 1024 \
	--server-pid "$NODE" --redis-addr "127.0.0.1:$RP" --json $EXTRA_BENCH \
	>"$OUT/abuse.json" 2>"$OUT/abuse.progress" || echo "bench exited $?"
# The same report for people, from the JSON (no second run).
python3 - "$OUT/abuse.json" <<'PY' | tee "$OUT/abuse.txt"
import json, sys
r = json.load(open(sys.argv[1]))
a = r["abuse"]
def ph(n, p):
    m, l = p["messages"], p.get("latency_ms") or {}
    print(f"{n:9} {p['connections']} conns  sent {m['sent']} accepted {m['accepted']} delivered {m['delivered']}"
          f"  lost {m['lost']} dup {m['duplicates']} order {m['out_of_order']} unconfirmed {m['unconfirmed']}"
          f"  p50 {l.get('p50', 0):.2f} ms  p99 {l.get('p99', 0):.2f} ms  errors {p['errors']}")
print(f"stored posts {a['seeded_posts']} (seeded in {a.get('seed_s', 0):.1f}s)")
ph("baseline", a["baseline"]); ph("attacked", a["attacked"])
print(f"p99 ratio {a.get('p99_ratio', 0):.2f}x, legitimate lost {a['legit_lost']}")
for k in a["attacks"]:
    ttc = k.get("time_to_close_ms") or {}
    print(f"{k['kind']:9} {k['clients']} clients {k['ops']} ops ({k['ops_per_s']:.0f}/s) sent {k['sent_mb']:.1f} MB"
          f" recv {k['received_mb']:.1f} MB  results {k['results']}  closes {k.get('closes', {})}"
          + (f"  time to close p50 {ttc['p50']:.0f} ms max {ttc['max']:.0f} ms" if ttc else ""))
for c in a.get("server_cpu", []):
    print(f"server CPU pid {c['pid']}: {c['baseline_cores']:.2f} cores in the baseline, {c['attacked_cores']:.2f} under attack")
for p_ in ("baseline", "attacked"):
    u = a[p_].get("legit_uploads")
    if u:
        l = u.get("reply_latency_ms") or {}
        print(f"legit uploads ({p_}): {u['results']}  p50 {l.get('p50', 0):.1f} ms max {l.get('max', 0):.1f} ms")
for m in a["memory"]:
    print(f"memory {m['source']}: {m['start_bytes']/2**20:.1f} -> {m['before_attack_bytes']/2**20:.1f}"
          f" -> {m['after_attack_bytes']/2**20:.1f} MiB ({m['attack_growth_bytes']/2**20:+.1f} under attack)")
print(f"bench stall {r['max_stall_ms']:.0f} ms, bench CPU {r['bench_cpu_s']:.1f} s; notes {r.get('notes', [])}")
PY
echo "node log: $OUT/node.log ($(wc -l <"$OUT/node.log") lines)"
