#!/usr/bin/env python3
"""The request explorer's store chosen by measurement (issue 21.3): the
same day of records (bench/scripts/explorer-day.py) loaded into SQLite
(the embedded alternative), with an index on time and one on team and
time, and the explorer's queries timed on it (median of ROUNDS), to set
beside bench/scripts/explorer-local.sh's numbers for the index beside the
files.

Usage: explorer-sqlite.py DAY.jsonl DB [ROUNDS]"""
import json, os, sqlite3, statistics, sys, time

day, db = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
fresh = not os.path.exists(db)
con = sqlite3.connect(db)
if fresh:
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("""CREATE TABLE requests (ts INTEGER, id TEXT, team TEXT, key TEXT, model TEXT,
        provider TEXT, status INTEGER, end_ TEXT, latency_ms REAL, cost_micro_usd INTEGER,
        cache TEXT, rules TEXT, offset INTEGER, len INTEGER)""")
    t0 = time.time()
    batch, offset = [], 0
    with open(day, "rb") as f:
        for raw in f:
            r = json.loads(raw)
            hits = (r.get("guardrails") or {}).get("hits") or []
            batch.append((r["ts"], r["id"], r.get("team") or "", r.get("key") or "", r.get("model") or "",
                          r.get("provider") or "", r["status"], r.get("end") or "",
                          (r.get("latency_ms") or {}).get("total", 0.0), r.get("cost_micro_usd") or 0,
                          (r.get("cache") or {}).get("outcome") or "",
                          ",".join(h.get("rule") or "" for h in hits), offset, len(raw) - 1))
            offset += len(raw)
            if len(batch) >= 100_000:
                con.executemany("INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
                batch.clear()
    con.executemany("INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", batch)
    t1 = time.time()
    con.execute("CREATE INDEX by_ts ON requests (ts, id)")
    con.execute("CREATE INDEX by_team ON requests (team, ts)")
    con.execute("CREATE INDEX by_id ON requests (id)")
    con.commit()
    t2 = time.time()
    print(f"loaded {offset} bytes in {t1 - t0:.1f} s (parse and insert), indexes {t2 - t1:.1f} s, "
          f"database {os.path.getsize(db) / 2**20:.0f} MiB")

cols = "ts, id, team, key, model, provider, status, end_, latency_ms, cost_micro_usd, cache, rules"
queries = [
    ("the newest 100, no filter", f"SELECT {cols} FROM requests ORDER BY ts DESC, id DESC LIMIT 101"),
    ("status=500", f"SELECT {cols} FROM requests WHERE status = 500 ORDER BY ts DESC, id DESC LIMIT 101"),
    ("rule=pii.email", f"SELECT {cols} FROM requests WHERE rules LIKE '%pii.email%' ORDER BY ts DESC, id DESC LIMIT 101"),
    ("team=team-42", f"SELECT {cols} FROM requests WHERE team = 'team-42' ORDER BY ts DESC, id DESC LIMIT 101"),
    ("min_latency_ms=598&min_cost_usd=0.0149",
     f"SELECT {cols} FROM requests WHERE latency_ms >= 598 AND cost_micro_usd >= 14900 ORDER BY ts DESC, id DESC LIMIT 101"),
    ("no match (team=nobody)", f"SELECT {cols} FROM requests WHERE team = 'nobody' ORDER BY ts DESC, id DESC LIMIT 101"),
    ("one request by id", f"SELECT {cols} FROM requests WHERE id = 'tg-41eb0-0-270000'"),
    ("a team's day, every row (the CSV export's rows)",
     f"SELECT {cols} FROM requests WHERE team = 'team-42' ORDER BY ts DESC, id DESC LIMIT 100001"),
    ("the 500s, every row", f"SELECT {cols} FROM requests WHERE status = 500 ORDER BY ts DESC, id DESC LIMIT 100001"),
]
print(f"| query | seconds (median of {rounds}) | rows |")
print("|---|---|---|")
for name, sql in queries:
    times, n = [], 0
    for _ in range(rounds):
        t = time.time()
        n = len(con.execute(sql).fetchall())
        times.append(time.time() - t)
    print(f"| {name} | {statistics.median(times):.3f} | {n} |")
