#!/usr/bin/env python3
"""Trains the built-in injection model (`kind = "builtin"` classifiers):
a logistic regression over hashed word unigrams and bigrams, written to
policy/data/injection-model.bin for the gateway to carry.

Training data, all public and none of it in the test sets
(tests/guardrails/public.jsonl, corpus.jsonl, faker.jsonl):
  positives - Microsoft PyRIT's jailbreak templates (MIT; the wheel
    pyrit==1.1.0 from PyPI, pyrit/datasets/jailbreak/**.yaml: 90 named
    templates, the Pliny and Arth Singh collections, and 488 community
    prompts from TrustAIRLab's in-the-wild set), each filled with one of
    PyRIT's AIRT objectives; the attack templates of EasyJailbreak's seed
    file (Apache-2.0; easyjailbreak==0.1.3: AutoDAN's 128 evolved DAN
    prompts, GPTFuzzer's 77 seeds, the Jailbroken set of Wei et al.),
    those of 200 characters or more. (Tensor Trust's short attacks were tried as
    positives too: the model learned that a short text is an attack and
    flagged 40% of short benign sentences. Short phrases are the in-line
    scorer's part; the model is for the long set-ups phrases miss.)
  negatives - the T0 training mixture sampled in the self-instruct
    repository (yizhongw/self-instruct, data/finetuning/t0_train_50k:
    news, reviews, questions over passages, summaries), the system
    prompts Tensor Trust players wrote to defend their accounts (Toyer et
    al., 2023; HumanCompatibleAI/tensor-trust-data, the hijacking and
    extraction benchmarks' pre-prompts, which
    speak of passwords and of ignoring instructions: real system
    prompts do), garak's ordinary instructions (in the PyRIT wheel), and
    long texts: T0 prompts run together to 1.5-8 KB,
    1-8 KB chunks of CPython 3.11's standard library and of licences
    other than the GPL (GPL-3 is the prompt-size workload's prose, left
    for the tests). Without the long texts the model learned that a long
    text is a jailbreak (GPL-3 in 8 KB pieces scored 0.29-0.43).
Any training text, positive or negative, whose word 8-grams overlap a
test text's by a fifth or more is dropped, so the in-the-wild prompts in
public.jsonl (from the same study as PyRIT's community prompts) stay
unseen. (text-davinci-003's answers to the self-instruct user-oriented
instructions were negatives once; those instructions are test negatives,
so the answers are left out.)

Features (policy/src/guard/model.rs computes the same): the text's ASCII
letters lower-cased; words are runs of ASCII letters and digits and of
bytes >= 0x80; each word hashed with 32-bit FNV-1a, each pair of
neighbouring words by murmur3's finaliser of the first's hash xor the
second's times 0x9E3779B1, into 2^18 buckets; a text's vector
has 1/sqrt(max(k, FLOOR)) in each of its k distinct buckets. Weights
are stored as i8 with one scale; the score is sigmoid(bias + sum of its
buckets' weights / sqrt(max(k, FLOOR))).

Usage (numpy, scipy, scikit-learn, pyyaml):
  python3 tests/guardrails/train_injection_model.py PYRIT_WHEEL_DIR \
      TENSOR_TRUST_CHECKOUT SELF_INSTRUCT_CHECKOUT EASYJAILBREAK_WHEEL_DIR \
      [STDLIB_DIR (/usr/lib/python3.11)] [LICENSES_DIR (/usr/share/common-licenses)]
the wheel directories are pyrit==1.1.0 and easyjailbreak==0.1.3 unzipped; the checkouts are git clones at
the commits below. Deterministic: the same inputs give the same file.
"""
import glob
import json
import math
import os
import random
import re
import struct
import subprocess
import sys

import numpy as np
import scipy.sparse as sp
import yaml
from sklearn.linear_model import LogisticRegression

TENSOR_TRUST = "e2385ea9cf448c9641b96e2e39f113ed4979a5b0"
SELF_INSTRUCT = "0b26ccaa415992100fa32df62d41b994cf928e23"
BITS = 18
# Licences trained on; GPL-3 is left for the tests (the prompt-size
# workload's prose is GPL-3).
LICENSES = ["Apache-2.0", "MPL-2.0", "LGPL-2.1", "GFDL-1.3", "Artistic"]
# A text with fewer distinct buckets is scaled as if it had this many:
# one short sentence's few words cannot carry it alone.
FLOOR = 64
# Inverse regularisation: 2, 5 and 20 measured alike on held-out data; 5.
C = 5.0
T0_PER_TEMPLATE = 80
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORD = re.compile(rb"[0-9a-z\x80-\xff]+")


def fnv(h, data):
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def fmix(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def buckets(text):
    words = WORD.findall(text.encode("utf-8").lower())
    mask = (1 << BITS) - 1
    out = set()
    prev = None
    for w in words:
        h = fnv(0x811C9DC5, w)
        out.add(h & mask)
        if prev is not None:
            out.add(fmix(prev ^ ((h * 0x9E3779B1) & 0xFFFFFFFF)) & mask)
        prev = h
    return sorted(out)


def show(repo, commit, path):
    return subprocess.run(["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def objectives_of(wheel):
    objectives = []
    for f in sorted(glob.glob(os.path.join(wheel, "pyrit/datasets/seed_datasets/local/airt/*.prompt"))):
        for seed in (yaml.safe_load(open(f, encoding="utf-8")) or {}).get("seeds", []):
            if isinstance(seed.get("value"), str):
                objectives.append(seed["value"])
    return objectives


def pyrit(wheel, objectives):
    rng = random.Random(7)
    out = []
    for f in sorted(glob.glob(os.path.join(wheel, "pyrit/datasets/jailbreak/**/*.yaml"), recursive=True)):
        doc = yaml.safe_load(open(f, encoding="utf-8"))
        value = doc.get("value") if isinstance(doc, dict) else None
        if not isinstance(value, str):
            continue
        value = value.replace("{% raw %}", "").replace("{% endraw %}", "")
        value = re.sub(r"\{\{\s*prompt\s*\}\}", lambda _: rng.choice(objectives), value)
        value = re.sub(r"\{\{[^}]*\}\}", "", value)
        out.append(value)
    return out


def easyjailbreak(wheel, objectives):
    """The attack templates of EasyJailbreak's seed file: AutoDAN's evolved
    DAN prompts, GPTFuzzer's 77 seeds and the Jailbroken set (Wei et al.),
    the placeholders filled with an objective."""
    with open(os.path.join(wheel, "easyjailbreak/seed/seed_template.json"), encoding="utf-8") as f:
        attack = json.load(f)["attack"]
    rng = random.Random(13)
    out = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            for e in v:
                walk(e)
        elif isinstance(v, dict):
            for e in v.values():
                walk(e)

    for family in ["AutoDAN-a", "Gptfuzzer", "Jailbroken"]:
        walk(attack[family])
    fill = re.compile(r"\[INSERT PROMPT HERE\]|\{query\}|\{\{query\}\}|\[PROMPT\]", re.I)
    return [fill.sub(lambda _: rng.choice(objectives), t) for t in out if len(t) >= 200]


def tensor_trust(repo):
    attacks, defenses = [], []
    for path in ["benchmarks/hijacking-robustness/v1/hijacking_robustness_dataset.jsonl",
                 "benchmarks/extraction-robustness/v1/extraction_robustness_dataset.jsonl"]:
        for line in show(repo, TENSOR_TRUST, path).splitlines():
            row = json.loads(line)
            attacks.append(row["attack"])
            defenses.append(row["pre_prompt"])
    return sorted(set(attacks)), sorted(set(defenses))


def t0(repo):
    files = subprocess.run(["git", "-C", repo, "ls-tree", "--name-only", SELF_INSTRUCT,
                            "data/finetuning/t0_train_50k/data_per_template/"], check=True, capture_output=True,
                           text=True).stdout.split()
    rng = random.Random(11)
    out = []
    for path in sorted(files):
        rows = show(repo, SELF_INSTRUCT, path).splitlines()
        for line in rng.sample(rows, min(T0_PER_TEMPLATE, len(rows))):
            out.append(json.loads(line)["prompt"])
    return out


def long_texts(t0_texts, stdlib, licenses):
    """Long benign texts, so that length is not what the model learns (the
    jailbreaks are long): T0 prompts run together to 1.5-8 KB, as a chat
    history or a retrieved context is; chunks of 1-8 KB of CPython's
    standard library (code and docstrings); chunks of licences (long
    legal prose)."""
    rng = random.Random(17)
    out = []
    for _ in range(1500):
        want, text = rng.randint(1500, 8000), ""
        while len(text) < want:
            text += rng.choice(t0_texts) + "\n\n"
        out.append(text)
    sources = sorted(glob.glob(os.path.join(stdlib, "*.py")))
    sources += [os.path.join(licenses, name) for name in LICENSES]
    for path in sources:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        at = 0
        while at < len(text):
            size = rng.randint(1000, 8000)
            out.append(text[at:at + size])
            at += size
    return out


def garak_normal(wheel):
    path = os.path.join(wheel, "pyrit/datasets/seed_datasets/local/garak/normal_instructions.prompt")
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    return [s["value"] for s in doc.get("seeds", []) if isinstance(s.get("value"), str)]


def shingles(text):
    w = re.findall(r"\w+", text.lower())
    return {" ".join(w[i:i + 8]) for i in range(max(0, len(w) - 7))}


def load_tests():
    tests = []
    for name in ["public.jsonl", "corpus.jsonl", "faker.jsonl", "long_docs.jsonl"]:
        with open(os.path.join(HERE, name), encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if "text" in row:
                    tests.append((name, row.get("source", name), "injection" in row["labels"], row["text"]))
    for path in sorted(glob.glob(os.path.join(ROOT, "bench/prompts/*.json"))):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        text = "\n".join(m["content"] for m in doc["messages"] if isinstance(m.get("content"), str))
        tests.append(("bench/prompts", "long-docs", False, text))
    return tests


def main():
    wheel, tt_repo, si_repo, ej_wheel = sys.argv[1:5]
    stdlib = sys.argv[5] if len(sys.argv) > 5 else "/usr/lib/python3.11"
    licenses = sys.argv[6] if len(sys.argv) > 6 else "/usr/share/common-licenses"
    objectives = objectives_of(wheel)
    tests = load_tests()
    seen = set()
    for _, _, _, text in tests:
        seen |= shingles(text)

    def unseen(text):
        s = shingles(text)
        return not s or len(s & seen) < 0.2 * len(s)

    _, defenses = tensor_trust(tt_repo)
    pos = [t for t in pyrit(wheel, objectives) + easyjailbreak(ej_wheel, objectives) if t.strip()]
    t0_texts = t0(si_repo)
    neg = t0_texts + defenses + garak_normal(wheel) + long_texts(t0_texts, stdlib, licenses)
    neg = [t for t in neg if t.strip()]
    dropped = len(pos) - sum(map(unseen, pos))
    pos = [t for t in pos if unseen(t)]
    dropped_neg = len(neg) - sum(map(unseen, neg))
    neg = [t for t in neg if unseen(t)]
    print(f"train: {len(pos)} positives ({dropped} dropped as near the test set), "
          f"{len(neg)} negatives ({dropped_neg} dropped)")

    texts = pos + neg
    y = np.array([1] * len(pos) + [0] * len(neg))
    rows, cols = [], []
    norms = []
    for i, t in enumerate(texts):
        b = buckets(t)
        rows += [i] * len(b)
        cols += b
        norms += [1.0 / math.sqrt(max(len(b), FLOOR))] * len(b)
    x = sp.csr_matrix((norms, (rows, cols)), shape=(len(texts), 1 << BITS))
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, solver="liblinear")
    model.fit(x, y)
    w = model.coef_[0]
    scale = float(np.abs(w).max()) / 127.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    bias = float(model.intercept_[0])

    def score(text):
        b = buckets(text)
        z = bias + scale * float(q[b].astype(np.int64).sum()) / math.sqrt(max(len(b), FLOOR))
        return 1.0 / (1.0 + math.exp(-z))

    out = os.path.join(ROOT, "policy/data/injection-model.bin")
    with open(out, "wb") as f:
        f.write(b"TGIM")
        f.write(struct.pack("<Iff", BITS, scale, bias))
        f.write(q.tobytes())
    print(f"wrote {out}: {os.path.getsize(out)} bytes, scale {scale:.6g}, bias {bias:.6g}")

    # Scores the Rust side must reproduce, and the test sets' figures.
    fixture = []
    neg_scores = sorted((score(t) for _, _, p, t in tests if not p), reverse=True)
    at = neg_scores[len(neg_scores) // 100]
    wild = [score(t) for _, s, p, t in tests if s == "inthewild"]
    print(f"1% of test negatives above {at:.4f}; in-the-wild recall there {sum(x > at for x in wild) / len(wild):.3f}")
    for threshold in [0.5, 0.7, 0.8, 0.9, 0.95]:
        by = {}
        for name, source, positive, text in tests:
            k = (source, positive)
            hit = score(text) >= threshold
            n, h = by.get(k, (0, 0))
            by[k] = (n + 1, h + hit)
        print(f"threshold {threshold}: " + ", ".join(
            f"{s}{'+' if p else '-'} {h}/{n}" for (s, p), (n, h) in sorted(by.items())))
    with open(os.path.join(HERE, "public.jsonl"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            row = json.loads(line)
            if "text" in row and i % 25 == 1:
                fixture.append({"line": i, "score": round(score(row["text"]), 6)})
    with open(os.path.join(ROOT, "policy/tests/data/injection_model_scores.json"), "w") as f:
        json.dump(fixture, f, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
