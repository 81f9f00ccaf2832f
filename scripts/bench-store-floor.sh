#!/usr/bin/env bash
# What Redis spends (CPU from /proc/<pid>/stat) on one chat store script
# call, with and without its publication, unpipelined and 16 deep, next to
# a trivial EVAL and a SET: the floor under the Redis part of a chat
# message (docs/benchmarks.md, "Chat: one script per message").
set -e
cd "$(dirname "$0")/.."
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(fp); redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & R=$!
sleep 0.5
src=$(go run ./scripts/printscript)
sha=$(redis-cli -p $RP script load "$src")
for i in $(seq 0 999); do printf 'HSET rb:u:{%012d} pwd x login %s\n' "$i" "$(date +%s000)"; done | redis-cli -p $RP >/dev/null
M='"from":"1","cmd":"message","type":"chat","to":"2","id":1,"seq":1,"ts":1,"post_id":1,"is_sender_post":false,"msg":"'$(head -c 150 /dev/zero | tr '\0' a)'"'
for P in 1 16; do
 for pub in '' 'rb:c:{__rand_int__}'; do
  t0=$(awk '{print $14+$15}' /proc/$R/stat)
  redis-benchmark -p $RP -c 50 -P $P -n 200000 -r 1000 -q EVALSHA $sha 4 'rb:u:{__rand_int__}' 'rb:q:{__rand_int__}' 'rb:n:{__rand_int__}' 'rb:s:{__rand_int__}' "$M" 100000000 2592000000 "$(date +%s000)" "$pub" PUBLISH 1 100000000 0 | tr '\r' '\n' | grep -a "requests per second" | tail -1
  t1=$(awk '{print $14+$15}' /proc/$R/stat)
  echo "P=$P pub='$pub' redis cpu per store: $(python3 -c "print(round(($t1-$t0)*10000/200000,2))") us"
  redis-cli -p $RP eval "for _,k in ipairs(redis.call('KEYS','rb:q:*')) do redis.call('DEL',k) end for _,k in ipairs(redis.call('KEYS','rb:s:*')) do redis.call('DEL',k) end return 0" 0 >/dev/null
 done
done
t0=$(awk '{print $14+$15}' /proc/$R/stat)
redis-benchmark -p $RP -c 50 -P 1 -n 200000 -q EVAL "return 1" 0 | tr '\r' '\n' | grep -a "requests per second" | tail -1
t1=$(awk '{print $14+$15}' /proc/$R/stat)
echo "P=1 trivial eval: $(python3 -c "print(round(($t1-$t0)*10000/200000,2))") us"
t0=$(awk '{print $14+$15}' /proc/$R/stat)
redis-benchmark -p $RP -c 50 -P 1 -n 200000 -q SET a b | tr '\r' '\n' | grep -a "requests per second" | tail -1
t1=$(awk '{print $14+$15}' /proc/$R/stat)
echo "P=1 SET: $(python3 -c "print(round(($t1-$t0)*10000/200000,2))") us"
kill $R
