#!/usr/bin/env python3
"""Builds long_docs.jsonl: long benign texts, as retrieved contexts and
chat histories are, for the false positives of the built-in injection
model (jailbreaks are long: a model can learn length instead of intent).

Source, frozen at the commit below so that editing the docs does not
move the test set: this repository's README, ARCHITECTURE, BENCHMARKS,
OPERATIONS and docs/configuration.md (which speak of jailbreaks and
quote injection phrases) in pieces of 2 and 8 KB. The test adds the
prompt-size workload's prompts (bench/prompts: GPL-3 prose, the memchr
crate's source, Faker's CJK sentences, tool schemas), read where they
are.

Usage: python3 tests/guardrails/gen_long_docs.py   (rewrites long_docs.jsonl)
"""
import json
import os
import subprocess

COMMIT = "c57727b"
DOCS = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md", "OPERATIONS.md", "docs/configuration.md"]
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def show(path):
    return subprocess.run(["git", "-C", ROOT, "show", f"{COMMIT}:{path}"], check=True, capture_output=True).stdout


def main():
    out = []
    for path in DOCS:
        text = show(path).decode("utf-8")
        data = text.encode("utf-8")
        for size in [2048, 8192]:
            at = 0
            while at + size // 2 < len(data):
                end = min(at + size, len(data))
                while end < len(data) and (data[end] & 0xC0) == 0x80:
                    end -= 1
                out.append({"source": "long-docs", "id": f"{path}@{at}+{size}", "labels": [],
                            "text": data[at:end].decode("utf-8")})
                at = end
    with open(os.path.join(HERE, "long_docs.jsonl"), "w", encoding="utf-8") as f:
        f.write(json.dumps({"commit": COMMIT}) + "\n")
        for row in out:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(out)} texts")


if __name__ == "__main__":
    main()
