#!/usr/bin/env bash
# Redis CPU per message of the gathered store script (16 messages a call),
# main's text vs the block branch's, alternating, one redis-server.
# Usage: OLD=old.lua NEW=new.lua scripts/bench-store-block-ab.sh, each made by
# `go run ./scripts/printscript -many` in the checkout of one build.
set -e
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(fp); redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & R=$!
trap "kill $R" EXIT
sleep 0.5
old=$(redis-cli -p $RP script load "$(cat "$OLD")")
new=$(redis-cli -p $RP script load "$(cat "$NEW")")
for i in $(seq 0 999); do printf 'HSET rb:u:{%012d} pwd x login %s\n' "$i" "$(date +%s000)"; done | redis-cli -p $RP >/dev/null
M='"from":"1","cmd":"message","type":"chat","to":"2","id":1,"post_id":1,"is_sender_post":false,"msg":"'$(head -c 150 /dev/zero | tr '\0' a)'"'
keys=(); args=()
for m in $(seq 16); do keys+=('rb:u:{__rand_int__}' 'rb:q:{__rand_int__}' 'rb:s:{__rand_int__}' 'rb:pd:{__rand_int__}' 'rb:pc:{__rand_int__}'); args+=("$M" 'rb:c:{__rand_int__}' 1 0); done
N=20000
for round in 1 2 3; do
 for which in old new; do
  sha=${!which}
  t0=$(awk '{print $14+$15}' /proc/$R/stat)
  redis-benchmark -p $RP -c 20 -P 1 -n $N -r 1000 -q EVALSHA $sha 80 "${keys[@]}" 100000000 2592000000 "$(date +%s000)" PUBLISH 100000000 0 "${args[@]}" | tr '\r' '\n' | grep -a "requests per second" | tail -1 >/dev/null
  t1=$(awk '{print $14+$15}' /proc/$R/stat)
  echo "round $round $which: redis cpu per message $(python3 -c "print(round(($t1-$t0)*10000/($N*16),3))") us"
  redis-cli -p $RP eval "for _,k in ipairs(redis.call('KEYS','rb:q:*')) do redis.call('DEL',k) end for _,k in ipairs(redis.call('KEYS','rb:s:*')) do redis.call('DEL',k) end return 0" 0 >/dev/null
 done
done
