#!/usr/bin/env bash
# Redis CPU per login script, main's text (no ban field) vs the bans
# branch's (the HMGET reads 'ban' too, and one test more), alternating on one
# redis-server: what a ban check costs every login. Run from the repository
# root of the bans branch:
#   BASE=a1bea85 scripts/bench-login-ban-ab.sh
set -e
BASE=${BASE:-main}
extract() { python3 -c 'import re,sys; s=sys.stdin.read(); print(re.search(r"newScript\(\"login_fetch\", `(.*?)`\)", s, re.S).group(1))'; }
OLD=$(git show "$BASE:broker/accounts.go" | extract)
NEW=$(extract < broker/accounts.go)
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(fp); redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & R=$!
trap "kill $R" EXIT
sleep 0.5
old=$(redis-cli -p $RP script load "$OLD")
new=$(redis-cli -p $RP script load "$NEW")
for i in $(seq 0 999); do printf 'HSET lb:u:{%012d} pwd x gen 1 login 1\n' "$i"; done | redis-cli -p $RP >/dev/null
N=${N:-100000}
for round in 1 2 3; do
 for which in old new; do
  sha=${!which}
  t0=$(awk '{print $14+$15}' /proc/$R/stat)
  redis-benchmark -p $RP -c 20 -P 1 -n $N -r 1000 -q EVALSHA $sha 5 'lb:u:{__rand_int__}' 'lb:q:{__rand_int__}' 'lb:s:{__rand_int__}' 'lb:pq:{__rand_int__}' 'lb:bk:{__rand_int__}' \
    "$(date +%s000)" 2592000000 0 x 'lb:c:{__rand_int__}' PUBLISH 0 0 86400000 0 | tr '\r' '\n' | grep -a "requests per second" | tail -1 >/dev/null
  t1=$(awk '{print $14+$15}' /proc/$R/stat)
  echo "round $round $which: redis cpu per login $(python3 -c "print(round(($t1-$t0)*10000/$N,3))") us"
 done
done
