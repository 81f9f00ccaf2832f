#!/usr/bin/env bash
# The operator's and the attacker's tour (docs/operations.md "Tried as an
# operator", docs/security.md "Tried as an attacker"), with real processes on
# loopback only: one redis-server with AOF, three db nodes and an img node
# behind HAProxy (deploy/compose/haproxy.cfg with loopback ports), then the
# hostile clients of scripts/tour/hostile against one node with default limits.
#
#   scripts/tour/tour.sh [all|rolling|outage|coldstart|flags|misc|hostile]
#
# Bounded in time (about 6 minutes for all), every process it starts is
# stopped on exit, everything is written under $TOUR_DIR (/tmp/optour/run).
set -u
ROOT=${TOUR_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
T=${TOUR_DIR:-/tmp/optour/run}
BIN=${OCCASE_BIN:-/tmp/optour/occase}
HOSTILE=${HOSTILE_BIN:-/tmp/optour/hostile}
RPORT=16379 LB=18080 STATS=18404
SECRET=$(printf '1%.0s' $(seq 64)) IKEY=$(printf '2%.0s' $(seq 64))
PIDS=()
mkdir -p "$T"
say() { printf '\n== %s\n' "$*"; }
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	sleep 1
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	[ -f "$T/redis.pid" ] && kill "$(cat "$T/redis.pid")" 2>/dev/null
}
trap cleanup EXIT

build() {
	(cd "$ROOT" && go build -o "$BIN" . && go build -o "$HOSTILE" ./scripts/tour/hostile) || exit 1
}

redis_start() {
	mkdir -p "$T/redis"
	redis-server --port $RPORT --bind 127.0.0.1 --dir "$T/redis" --appendonly yes \
		--save '' --daemonize yes --pidfile "$T/redis.pid" --logfile "$T/redis.log"
	for _ in $(seq 50); do redis-cli -p $RPORT ping >/dev/null 2>&1 && return; sleep 0.1; done
}
redis_stop() { redis-cli -p $RPORT shutdown >/dev/null 2>&1; sleep 0.3; }

# db N [extra flags...]: start db node N (addr 1808N, admin 1908N) in the background.
DBPID=()
db() {
	local i=$1; shift
	"$BIN" serve --role db --addr 127.0.0.1:1808$i --admin-addr 127.0.0.1:1908$i \
		--redis 127.0.0.1:$RPORT --secret $SECRET --image-key $IKEY \
		--log-format json --trusted-proxies 127.0.0.1 --drain-timeout 5s \
		--menu "$ROOT/posts/demo_menu.json" "$@" \
		>>"$T/db$i.log" 2>&1 &
	DBPID[$i]=$!
	PIDS+=($!)
}
img() {
	"$BIN" serve --role img --addr 127.0.0.1:18084 --admin-addr 127.0.0.1:19084 \
		--image-key $IKEY --image-dir "$T/images" --log-format json \
		--trusted-proxies 127.0.0.1 >>"$T/img.log" 2>&1 &
	PIDS+=($!)
}
ready() { # ready PORT [seconds]: wait for /readyz 200
	for _ in $(seq $((${2:-10} * 10))); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz")" = 200 ] && return 0
		sleep 0.1
	done
	return 1
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | grep -E "^($2)" ; }

haproxy_start() {
	# deploy/compose/haproxy.cfg with loopback ports and no Docker DNS;
	# every other setting (checks on /readyz, leastconn, slowstart) kept.
	sed -e "s/maxconn 400000/maxconn 4000/" -e "s/bind :8080/bind 127.0.0.1:$LB/" -e "s/bind :8404/bind 127.0.0.1:$STATS/" \
		-e '/^resolvers docker/,/^$/d' -e 's/ resolvers docker init-addr last,libc,none//' \
		-e 's/log stdout format raw local0 info/log stdout format raw local0 notice/' \
		-e '/server db2 db2:8080/d' -e "s/server db1 db1:8080/server db1 127.0.0.1:18081\n    server db2 127.0.0.1:18082\n    server db3 127.0.0.1:18083/" \
		-e "s/server img img:8080/server img 127.0.0.1:18084/" \
		"$ROOT/deploy/compose/haproxy.cfg" >"$T/haproxy.cfg"
	haproxy -c -f "$T/haproxy.cfg" >/dev/null || { echo "haproxy.cfg invalid"; exit 1; }
	haproxy -f "$T/haproxy.cfg" >>"$T/haproxy.log" 2>&1 &
	PIDS+=($!)
}
lbstate() { # one line: server=status for the db backend
	curl -s "http://127.0.0.1:$STATS/;csv" | awk -F, '$1=="db" && $2!="BACKEND"{printf "%s=%s ", $2, $18} END{print ""}'
}

cluster() {
	rm -rf "$T"/*.log "$T/redis" "$T/images"
	redis_start
	# The bench registers every user from one address (the balancer's
	# X-Forwarded-For is 127.0.0.1): the registration budgets are lifted,
	# as `occase bench -h` says; everything else is the default.
	for i in 1 2 3; do db $i --register-rate 0 --register-per-day 0 --chat-rate 0; done
	img
	for i in 1 2 3; do ready 1808$i 15 || echo "db$i not ready"; done
	haproxy_start
	sleep 5
	echo "balancer: $(lbstate)"
}

rolling() {
	say "rolling restart under chat through HAProxy"
	"$BIN" bench --url ws://127.0.0.1:$LB/ws --users 100 --rate 2 --duration 60s --drain 10s \
		--quiet >"$T/bench-rolling.txt" 2>&1 &
	local b=$!
	PIDS+=($b)
	# The bench does not reconnect (issue 16.9): its "lost" counts messages
	# queued for users whose connection closed. hostile -mode chat logs in
	# again after every close and counts exactly.
	"$HOSTILE" -mode chat -pairs 20 -rate 5 -d 50s -url ws://127.0.0.1:$LB/ws >"$T/chat-rolling.txt" 2>&1 &
	local h=$!
	PIDS+=($h)
	sleep 8
	for i in 1 2 3; do
		local t0=$(date +%s.%N)
		kill -TERM ${DBPID[$i]}; wait ${DBPID[$i]} 2>/dev/null; local rc=$?
		local t1=$(date +%s.%N)
		db $i --register-rate 0 --register-per-day 0 --chat-rate 0
		ready 1808$i 15; local t2=$(date +%s.%N)
		printf 'db%s: exit %s after %.1fs of drain, ready %.1fs after start; balancer: %s\n' \
			$i $rc "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(lbstate)"
		sleep 8
	done
	echo "connections after the rollout (db3 restarted last; leastconn + slowstart 30s):"
	for i in 1 2 3; do echo "  db$i: $(metric 1908$i 'occase_connections\{state="all"\}' | awk '{print $2}')"; done
	wait $b $h
	cat "$T/bench-rolling.txt" "$T/chat-rolling.txt"
}

outage() {
	say "Redis stopped for 10 s"
	"$BIN" bench --url ws://127.0.0.1:$LB/ws --users 20 --rate 1 --duration 30s --drain 15s \
		--quiet >"$T/bench-outage.txt" 2>&1 &
	local b=$!
	PIDS+=($b)
	sleep 5
	local before=$(cat "$T"/db*.log | wc -l)
	redis_stop
	for s in 2 5 9; do
		sleep $(( s == 2 ? 2 : (s == 5 ? 3 : 4) ))
		echo "t+${s}s: balancer: $(lbstate) menu=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$LB/api/menu)" \
			"webapp=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$LB/)" \
			"readyz=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18081/readyz)" \
			"deep=$(curl -s -o /dev/null -w '%{http_code}' 'http://127.0.0.1:18081/readyz?deep=1')" \
			"ws_register=$("$HOSTILE" -mode regstorm -n 1 -url ws://127.0.0.1:$LB/ws -d 3s 2>&1 | cut -d' ' -f2-)"
	done
	metric 19081 'occase_redis_up|occase_redis_subscriber_up'
	sleep 1
	redis_start
	local t0=$(date +%s.%N)
	until [ "$(metric 19081 'occase_redis_subscriber_up' | awk '{print $2}')" = 1 ]; do sleep 0.1; done
	printf 'subscriber back %.1fs after Redis\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
	wait $b
	cat "$T/bench-outage.txt"
	echo "log lines during the outage (3 db nodes): $(( $(cat "$T"/db*.log | wc -l) - before ))"
	cat "$T"/db*.log | tail -n +$((before + 1)) | grep -o '"msg":"[^"]*"' | sort | uniq -c | sort -rn | head
}

coldstart() {
	say "a node started while Redis is down"
	redis_stop
	db 4 --addr 127.0.0.1:18085 --admin-addr 127.0.0.1:19085
	sleep 3
	echo "after 3 s: alive=$(kill -0 ${DBPID[4]} 2>/dev/null && echo yes || echo no)" \
		"healthz=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:19085/healthz)" \
		"readyz=$(curl -s http://127.0.0.1:18085/readyz)" \
		"menu=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18085/api/menu)" \
		"ws=$(curl -s -o /dev/null -w '%{http_code}' -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' http://127.0.0.1:18085/ws)"
	redis_start
	ready 18085 15 && echo "ready after Redis came back"
	grep -o '"msg":"[^"]*"' "$T/db4.log" | uniq -c
	kill ${DBPID[4]}
}

flags() {
	say "wrong flags (one line and exit code each)"
	local db="$BIN serve --role db --addr 127.0.0.1:18089 --admin-addr 127.0.0.1:19089"
	local ok="--redis 127.0.0.1:$RPORT --image-key $IKEY"
	echo '{"not a menu' >"$T/bad-menu.json"
	local cases=(
		"other --secret|$db $ok --secret $(printf '3%.0s' $(seq 64))"
		"other --image-key|$db --redis 127.0.0.1:$RPORT --secret $SECRET --image-key $(printf '4%.0s' $(seq 64))"
		"db without --redis|$db --secret $SECRET --image-key $IKEY"
		"mistyped --redis|$db --redis 127.0.0.1:16380 --secret $SECRET --image-key $IKEY"
		"mistyped --redis host|$db --redis 127.0.0.l:$RPORT --secret $SECRET --image-key $IKEY"
		"--redis-tls on plain Redis|$db $ok --secret $SECRET --redis-tls"
		"bad --menu|$db $ok --secret $SECRET --menu $T/bad-menu.json"
		"missing --menu|$db $ok --secret $SECRET --menu $T/none.json"
		"unknown flag|$db $ok --secret $SECRET --redis-adress x"
		"short --secret|$db $ok --secret abcd"
		"no --secret|$db $ok"
	)
	for c in "${cases[@]}"; do
		local name=${c%%|*} cmd=${c#*|}
		timeout 12 $cmd --log-format console >"$T/flag.out" 2>&1
		local rc=$?
		printf '%-28s exit %-3s lines %-2s %s\n' "$name" $rc "$(wc -l <"$T/flag.out")" "$(grep -v '^\s*$' "$T/flag.out" | tail -1 | cut -c1-220)"
	done
}

misc() {
	say "version, startup line, /metrics only on the admin port, logs under a registration burst"
	"$BIN" version
	grep -m1 -o '"msg":"[^"]*listening[^}]*' "$T/db1.log" || head -c 400 "$T/db1.log"
	echo "/metrics on the public port: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18081/metrics)," \
		"through HAProxy: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$LB/metrics)," \
		"on the admin port: $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:19081/metrics)"
	metric 19081 'occase_build_info'
	# A node with the default registration limits: 2000 registrations from
	# one address (20 pass), then 20 from each of 100 addresses.
	db 5 --addr 127.0.0.1:18086 --admin-addr 127.0.0.1:19086
	ready 18086 10
	local before=$(wc -l <"$T/db5.log")
	"$HOSTILE" -mode regstorm -n 2000 -url ws://127.0.0.1:18086/ws -d 60s
	"$HOSTILE" -mode regstorm -n 20 -src "$(seq -s, -f '127.0.2.%g' 1 100)" -url ws://127.0.0.1:18086/ws -d 60s
	sleep 2
	echo "log lines for 4000 registrations: $(( $(wc -l <"$T/db5.log") - before ))"
	tail -n +$((before + 1)) "$T/db5.log" | grep -o '"msg":"[^"]*"' | sort | uniq -c | sort -rn | head -5
	metric 19086 'occase_log_dropped_total|occase_register_refused_total'
	kill ${DBPID[5]}
}

hostile() {
	say "hostile clients against one node with default limits"
	rm -rf "$T/redis"; redis_stop; redis_start
	"$BIN" serve --role db --addr 127.0.0.1:18087 --admin-addr 127.0.0.1:19087 \
		--redis 127.0.0.1:$RPORT --secret $SECRET --image-key $IKEY --log-format json \
		>>"$T/victim.log" 2>&1 &
	local v=$!; PIDS+=($v)
	"$BIN" serve --role img --addr 127.0.0.1:18088 --admin-addr 127.0.0.1:19088 \
		--image-key $IKEY --image-dir "$T/images" --log-format json >>"$T/victim-img.log" 2>&1 &
	PIDS+=($!)
	ready 18087 10; ready 18088 10
	local U=ws://127.0.0.1:18087/ws
	cpu() { awk '{print $14+$15}' /proc/$v/stat; }
	attack() { # attack NAME SRC ARGS...: honest pair from 127.0.0.2 meanwhile
		local name=$1 from=$2; shift 2
		"$HOSTILE" -mode honest -src 127.0.0.2 -url $U -d 10s -rate 10 >"$T/honest.txt" 2>&1 &
		local h=$!
		local c0=$(cpu) t0=$(date +%s.%N)
		"$HOSTILE" -url $U -src "$from" -d 10s "$@" 2>&1 | cut -c1-400
		local c1=$(cpu) t1=$(date +%s.%N)
		wait $h
		printf '  node CPU during %s: %.0f%% of a core; honest client: %s\n' "$name" \
			"$(echo "($c1 - $c0) / $(getconf CLK_TCK) / ($t1 - $t0) * 100" | bc -l)" "$(cut -c1-300 "$T/honest.txt")"
	}
	attack "frame flood" 127.0.0.3 -mode flood
	attack "many-field frames (60 KB, over --max-message)" 127.0.0.4 -mode fields
	attack "many-field frames (15 KB, forwarded)" 127.0.0.9 -mode fields -size 15000
	attack "subscribe storm" 127.0.0.5 -mode substorm
	attack "kicked session" 127.0.0.6 -mode kicked
	attack "registration storm, one address" 127.0.0.7 -mode regstorm -n 200
	attack "registration storm, 50 addresses" "$(seq -s, -f '127.0.1.%g' 1 50)" -mode regstorm -n 30
	echo "  scans with no-match filters (200 requests from one address, 8 at once):"
	seq 200 | xargs -P 8 -I{} curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:18087/api/posts?product=999&location=999&q=zzzz{}" | sort | uniq -c
	echo "  slow upload (1 KiB/s) to img:"
	head -c 300000 /dev/urandom >"$T/big.bin"
	local name=$("$HOSTILE" -mode filenames -src 127.0.0.8 -url $U | cut -d' ' -f2)
	timeout 40 curl -s -o /dev/null -w '  status %{http_code} after %{time_total}s\n' --limit-rate 1k \
		-H 'Content-Type: image/jpeg' --data-binary @"$T/big.bin" "http://127.0.0.1:18088/$name.jpg"
	echo "  slow request headers (one byte a second):"
	( exec 3<>/dev/tcp/127.0.0.1/18087; t0=$(date +%s)
	  for ch in G E T ' ' / ' ' H T T P; do printf %s "$ch" >&3 2>/dev/null || break; sleep 1; done
	  timeout 30 cat <&3 >/dev/null; echo "  closed by the node after $(( $(date +%s) - t0 ))s" )
	echo "  idle keep-alive HTTP connection (held 15 s):"
	( exec 3<>/dev/tcp/127.0.0.1/18087
	  printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >&3; sleep 15
	  printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >&3 2>/dev/null
	  timeout 2 cat <&3 | grep -c '^HTTP/1.1' | sed 's/^/  responses on the connection: /' )
	metric 19087 'occase_connection_closes_total|occase_rate_refused_total|occase_register_refused_total|occase_read_throttled_total|occase_posts_reads_rate_limited_total|occase_posts_subscribes_rate_limited_total|occase_image_refusals_total|occase_log_dropped_total' | head -40
	echo "  victim log lines: $(wc -l <"$T/victim.log")"
	grep -o '"msg":"[^"]*"' "$T/victim.log" | sort | uniq -c | sort -rn | head
}

case ${1:-all} in
all) build; cluster; rolling; outage; coldstart; flags; misc; cleanup; PIDS=(); hostile ;;
operator) build; cluster; rolling; outage; coldstart; flags; misc ;;
rolling | outage | coldstart | flags | misc) build; cluster; "$1" ;;
hostile) build; hostile ;;
*) echo "usage: $0 [all|rolling|outage|coldstart|flags|misc|hostile]"; exit 2 ;;
esac
