# Shared by the benchmark scripts (bench/*.sh, scripts/bench-*.sh): source
# it after `set -euo pipefail`. Every process a script starts goes into
# pids, and all of them are stopped when the script exits.

# freeport prints a free TCP port on 127.0.0.1.
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# cputicks prints the user plus system CPU time of process $1, in clock ticks.
cputicks() { awk '{print $14+$15}' "/proc/$1/stat"; }

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
