# A day of records at 100 requests/s (8,640,000 lines) for the explorer's
# local benchmark: 100 teams, 1,000 keys, 1% 429s, 0.01% 500s, 0.02%
# guardrail hits; requests end out of start order (up to 2 s).
import sys, random
day_ms = 1796169600000  # 2026-12-02T00:00:00Z
n = int(sys.argv[2]) if len(sys.argv) > 2 else 8_640_000
out = open(sys.argv[1], "w", buffering=1 << 22)
rnd = random.Random(7)
buf = []
for i in range(n):
    ts = day_ms + i * 10 - rnd.randrange(0, 2000) + 2000
    k = rnd.randrange(1000)
    team = k % 100
    r = rnd.random()
    status = 500 if r < 0.0001 else 429 if r < 0.0101 else 200
    lat = rnd.uniform(80, 600)
    cost = rnd.randrange(100, 15000)
    g = ',"guardrails":{"profile":"p","version":3,"hits":[{"rule":"pii.email","action":"redact","in":"request","text":0,"at":12,"len":17}]}' if rnd.random() < 0.0002 else ""
    end = "completed" if status == 200 else "rejected" if status == 429 else "failed"
    tp, tc = rnd.randrange(20, 4000), rnd.randrange(5, 800)
    buf.append(f'{{"id":"tg-{i:x}-0-{i}","ts":{ts},"team":"team-{team}","key":"key-{k}","model":"gpt-4o-mini","provider":"openai","upstream_model":"gpt-4o-mini-2024-07-18","attempts":[{{"provider":"openai","upstream_model":"gpt-4o-mini-2024-07-18","status":{status},"ms":{lat - 1.5:.3f}}}],"status":{status},"stream":{"true" if i % 3 == 0 else "false"},"tokens":{{"prompt":{tp},"completion":{tc},"cached":0,"cache_write":0}},"cost_micro_usd":{cost},"latency_ms":{{"total":{lat:.3f},"upstream":{lat - 1.5:.3f},"ttft":{lat / 3:.3f},"gateway":0.412}},"bytes_in":{tp * 4},"bytes_out":{tc * 4 + 300},"cache":{{"outcome":"miss"}}{g},"end":"{end}"}}\n')
    if len(buf) >= 10000:
        out.write("".join(buf)); buf.clear()
out.write("".join(buf))
