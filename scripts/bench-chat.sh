#!/usr/bin/env bash
# The chat figure of the README: BenchmarkChatAcrossNodes (two nodes, one
# real Redis) and, on the same Redis in the same run, redis-benchmark
# running the very same store script, which is the Redis work of one chat
# message. Prints both and the ratio. Usage: scripts/bench-chat.sh [messages]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize yes --pidfile "$dir/pid" >/dev/null
trap 'kill $(cat "$dir/pid") 2>/dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done

out=$(OCCASE_BENCH_REDIS=127.0.0.1:$port go test ./roles -run '^$' -bench BenchmarkChatAcrossNodes -benchtime "${n}x" -count 1 2>/dev/null | grep '^Benchmark')
echo "$out"
# The first sub-benchmark is occase as configured by default; the second,
# --write-batch=1, is the benchmark's own baseline.
occase=$(echo "$out" | head -1 | awk '{for(i=1;i<=NF;i++) if($(i)=="msgs/s") print $(i-1)}')

# The same store script, for one existing user, 50 clients, pipelined 16
# deep (what Redis can do at best).
src=$(go run ./scripts/printscript)
redis-cli -p "$port" hset 'bench:u:{1}' login "$(date +%s000)" >/dev/null
sha=$(redis-cli -p "$port" script load "$src")
# The cap and the sender's share are set above the run's million stores, so
# every run stores and counts (a refusal would be cheaper).
rb=$(redis-benchmark -p "$port" -c 50 -P 16 -n 1000000 -q EVALSHA "$sha" 4 'bench:u:{1}' 'bench:q:{1}' 'bench:n:{1}' 'bench:s:{1}' '"from":"2","to":"1","msg":"Is it still available?"' 2000000 2592000000 "$(date +%s000)" '' PUBLISH 2 2000000 0 | tr '\r' '\n' | grep 'requests per second' | tail -1)
echo "redis-benchmark, the same store script: $(echo "$rb" | grep -o "[0-9.]* requests per second.*")"
redis=$(echo "$rb" | grep -o '[0-9.]* requests per second' | awk '{print $1}')
python3 -c "print(f'occase delivers {float(\"$occase\"):.0f} chat messages/s = {float(\"$occase\")/float(\"$redis\"):.1%} of the {float(\"$redis\"):.0f} store-script runs/s redis-benchmark gets from the same Redis')"
