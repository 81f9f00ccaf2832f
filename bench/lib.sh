# Shared by the benchmark scripts (bench/*.sh, scripts/bench-*.sh): source
# it after `set -euo pipefail`. Every process a script starts goes into
# pids, and all of them are stopped when the script exits.

# freeport prints a free TCP port on 127.0.0.1, drawn below the kernel's
# ephemeral range (as brokertest.FreeAddr does): a port the kernel hands
# out may go to another listener or a connection's source before the
# node binds it (a bench run met "bind: address already in use").
freeport() {
	python3 -c '
import random, socket
try: low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except Exception: low = 32768
for _ in range(200):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(10000, max(low, 11001))))
        print(s.getsockname()[1]); break
    except OSError: pass
    finally: s.close()
else:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
'
}
# cputicks prints the user plus system CPU time of process $1, in clock ticks.
cputicks() { awk '{print $14+$15}' "/proc/$1/stat"; }

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
# waitredis waits (up to 10 s) until the redis-server on port $1 answers.
waitredis() {
	for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "redis-server on port $1 did not answer" >&2
	return 1
}
# waitready waits (up to 10 s) until the occase node on port $1 is ready.
waitready() {
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done
	echo "the node on port $1 is not ready" >&2
	return 1
}
