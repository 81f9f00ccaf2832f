"""Turns a results folder of bench/reproduce.sh into the figures of
docs/benchmarks.md: rates, latencies, CPU per message, Redis calls per
message and the redis-benchmark ceiling with occase's fraction of it."""
import json, os, re, sys
d = sys.argv[1]
def j(name):
    p = os.path.join(d, name)
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return None
    return json.load(open(p))
def rps(label):
    for line in open(os.path.join(d, 'ceiling.txt')):
        if line.startswith(label):
            return float(line.split(': ')[1].split()[0])
out = []
P = out.append
P(open(os.path.join(d, 'machine.txt')).read().strip())
if not os.path.exists(os.path.join(d, 'ceiling.txt')):
    open(os.path.join(d, 'ceiling.txt'), 'w').close()
c = j('chat.json')
if c:
    n = c['messages']['delivered']
    cpu = dict((l.split()[1], float(l.split()[2]) + (float(l.split()[3]) if len(l.split()) > 3 else 0)) for l in open(os.path.join(d, 'chat.cpu')))
    stats = {}
    for l in open(os.path.join(d, 'chat.commandstats')):
        m = re.match(r'cmdstat_(\w+):calls=(\d+)', l)
        if m: stats[m.group(1)] = int(m.group(2))
    ev = stats.get('evalsha', 0) + stats.get('eval', 0)
    fetch_per = ev / n - 1
    P(f"chat: {c['delivered_per_s']:.0f} delivered msg/s (chat {c['delivered_by_type']['chat']}, receipts {c['delivered_by_type']['receipts']}, presence {c['delivered_by_type']['presence']}), window {c['window_s']}s")
    P(f"chat: latency {c['latency_ms']}")
    P(f"chat: tally {c['messages']} errors {c['errors']} stall {c.get('max_stall_ms')}")
    P(f"chat: EVALSHA {ev} for {n} messages = {ev/n:.3f} per message (store 1 + fetch {fetch_per:.3f}); commandstats {stats}")
    for k, v in cpu.items():
        P(f"chat: cpu {k} {v:.2f} s = {v/n*1e6:.1f} µs per delivered message")
    tot = sum(cpu.values()); srv = tot - cpu.get('bench', 0)
    P(f"chat: all processes {tot/n*1e6:.1f} µs/msg -> {2e6/(tot/n*1e6):.0f} msg/s if they had both cores; without the bench {srv/n*1e6:.1f} µs/msg -> {2e6/(srv/n*1e6):.0f} msg/s")
    for p in (1, 16):
        s, f = rps(f'store P={p}'), rps(f'fetch P={p}')
        if s is None or f is None:
            continue
        ceil = 1 / (1 / s + fetch_per / f)
        P(f"ceiling P={p}: store {s:.0f}/s fetch {f:.0f}/s -> {ceil:.0f} msg/s; occase = {c['delivered_per_s']/ceil:.1%} of it (target >= 50%)")
pc = j('paced.json')
if pc:
    P(f"paced: {pc['delivered_per_s']:.0f} msg/s latency {pc['latency_ms']} tally lost {pc['messages']['lost']} dup {pc['messages']['duplicates']} ooo {pc['messages']['out_of_order']} errors {pc['errors']} stall {pc.get('max_stall_ms')}")
cn = j('connect.json')
if cn:
    P(f"connect: dial {cn['dial']['per_s']:.0f}/s register {cn['register']['per_s']:.0f}/s login {cn['login']['per_s']:.0f}/s ({cn['login']['count']}) login latency {cn['login_latency_ms']} errors {cn['errors']} stall {cn.get('max_stall_ms')}")
i = j('idle.json')
if i:
    P(f"idle: held {i['connections']} register {i['register']['per_s']:.0f}/s server {json.dumps(i['server'])} errors {i['errors']}")
for r in sorted((f for f in os.listdir(d) if f.startswith('sweep-') and f.endswith('.json')), key=lambda f: float(f[6:-5])):
    w = j(r)
    if w:
        m = w['messages']
        P(f"sweep {r[6:-5]} chat/s/user: {w['delivered_per_s']:.0f} msg/s p50 {w['latency_ms']['p50']:.2f} p99 {w['latency_ms']['p99']:.2f} p99.9 {w['latency_ms']['p99_9']:.2f} max {w['latency_ms']['max']:.2f} ms lost {m['lost']} dup {m['duplicates']} ooo {m['out_of_order']} stall {w.get('max_stall_ms'):.0f} ms")
for s in (1000, 10000):
    f = j(f'fanout-{s}.json')
    if f:
        P(f"fanout {s}: {f.get('delivered_per_s')} deliveries/s tally {f.get('messages')} latency {f.get('latency_ms')} errors {f['errors']} stall {f.get('max_stall_ms')}")
        cf = os.path.join(d, f'fanout-{s}.cpu')
        if os.path.exists(cf) and f.get('messages'):
            n = f['messages']['delivered']
            for l in open(cf):
                w = l.split()
                v = float(w[2]) + (float(w[3]) if len(w) > 3 else 0)
                P(f"fanout {s}: cpu {w[1]} {v:.2f} s = {v/n*1e6:.2f} µs per delivery")
print("\n".join(out))
