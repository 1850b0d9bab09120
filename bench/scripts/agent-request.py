#!/usr/bin/env python3
"""Replays one captured agent request (e.g. Claude Code's ~87 KB
/v1/messages body, taken from a record's `capture.prompt` with
`[logging] capture_bodies = true`) N times on one keep-alive connection,
then prints the gateway-added time from the records (first 20 dropped).

Usage: agent-request.py BODY_FILE GATEWAY_PORT KEY RECORDS_DIR [N]
"""
import glob
import http.client
import json
import statistics
import sys
import time

body_file, port, key, records = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 300
body = open(body_file, "rb").read()
c = http.client.HTTPConnection("127.0.0.1", port)
headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
for _ in range(n):
    c.request("POST", "/v1/messages", body, headers)
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
time.sleep(0.5)
added = []
for path in glob.glob(f"{records}/*.jsonl"):
    for line in open(path):
        rec = json.loads(line)
        if "gateway" in rec["latency_ms"]:
            added.append(rec["latency_ms"]["gateway"])
added = sorted(added[20:])
print(
    f"{len(added)} requests of {len(body)} bytes: gateway-added p50 {statistics.median(added):.3f} ms, "
    f"p90 {added[int(len(added) * 0.9)]:.3f} ms, p99 {added[int(len(added) * 0.99)]:.3f} ms"
)
