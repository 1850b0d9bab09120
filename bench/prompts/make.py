#!/usr/bin/env python3
"""Chat request bodies at the sizes real traffic carries (100 B, 2 KB,
8 KB, 32 KB, 100 KB), for the prompt-size benchmarks: `mixed-SIZE.json`
(a system prompt, then a user message of prose, code and CJK in turn) and
`tools-8192.json` (the same with JSON tool schemas, as agents send);
`conversation-SIZE.json` (a history of prose and code turns, sent again
with each turn, then a new message of the mixed text); `agent-SIZE.json`
(a coding agent's loop: many short turns, tool calls and their results,
the tool schemas after the messages, as the OpenAI SDK orders them).

Text from sources this project did not write: prose from the GNU GPL v3
(/usr/share/common-licenses/GPL-3, Debian's base-files), code from the
`memchr` crate's sources in the local cargo registry (falling back to
this repository's own Rust when absent), CJK lines from the guardrail
corpus's generated Japanese and Chinese locales. Re-run to regenerate:
python3 bench/prompts/make.py
"""
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def prose():
    with open("/usr/share/common-licenses/GPL-3", encoding="utf-8") as f:
        return " ".join(f.read().split())


def code():
    files = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/memchr-2.*/src/memmem/*.rs")))
    files = files or sorted(glob.glob(os.path.join(ROOT, "protocol/src/http1/*.rs")))
    return "\n".join(open(p, encoding="utf-8").read() for p in files[:4])


def cjk():
    lines = []
    with open(os.path.join(ROOT, "tests/guardrails/corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            t = d["text"]
            # Personal data is fine (guardrails redact it, as they would in
            # real traffic); secrets and injections would block the request.
            secrets = {"anthropic_key", "aws_key", "github_token", "jwt", "openai_key", "password", "private_key", "slack_token", "injection"}
            blocked = bool(secrets & set(d["labels"]))
            if not blocked and any("\u4e00" <= c <= "\u9fff" or "\u3040" <= c <= "\u30ff" for c in t):
                lines.append(t)
    return "\n".join(lines)


def mixed(n):
    """About n bytes of text: prose, code and CJK in turn, 1 KB at a time."""
    sources = [prose(), code(), cjk()]
    out, at, i = [], [0, 0, 0], 0
    while sum(len(s.encode()) for s in out) < n:
        k = i % 3
        src = sources[k]
        piece = src[at[k]:at[k] + 1024] or src[:1024]
        at[k] = (at[k] + 1024) % max(len(src) - 1024, 1)
        out.append(piece)
        i += 1
    text = "".join(out).encode()[:n].decode("utf-8", "ignore")
    return text


TOOLS = [
    {"type": "function", "function": {"name": f"tool_{i}", "description": "Look up an order, a shipment or an invoice by its id and return its current state.",
     "parameters": {"type": "object", "properties": {"id": {"type": "string", "description": "The order id"},
                                                     "fields": {"type": "array", "items": {"type": "string", "enum": ["status", "items", "total", "address"]}},
                                                     "max_tokens": {"type": "integer", "minimum": 1}}, "required": ["id"]}}}
    for i in range(12)
]


def body(n, tools=False):
    system = "You are a careful assistant for the finance team. Answer briefly."
    messages = [{"role": "system", "content": system}] if n >= 1024 else []
    doc = {"model": "gpt-4o-mini", "messages": messages + [{"role": "user", "content": ""}]}
    if tools:
        doc["tools"] = TOOLS
    empty = len(json.dumps(doc, ensure_ascii=False).encode())
    doc["messages"][-1]["content"] = mixed(max(n - empty, 8))
    # JSON escapes grow the body: trim the text until it fits.
    while len(json.dumps(doc, ensure_ascii=False).encode()) > n and len(doc["messages"][-1]["content"]) > 8:
        doc["messages"][-1]["content"] = doc["messages"][-1]["content"][:-16]
    return json.dumps(doc, ensure_ascii=False)


def conversation(n):
    """A conversation of about n bytes, as a chat client sends its history
    again with every turn: the system prompt, turns of prose and code of
    about 2 KB (user and assistant in turn), then a new user message of
    about 1 KB of the mixed text (CJK lines with personal data in them)."""
    sources = [prose(), code()]
    doc = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are a careful assistant for the finance team. Answer briefly."}]}
    last = {"role": "user", "content": mixed(3072)[-900:]}
    at, i = [0, 0], 0
    while True:
        k = i % 2
        src = sources[k]
        piece = src[at[k]:at[k] + 2048] or src[:2048]
        at[k] = (at[k] + 2048) % max(len(src) - 2048, 1)
        turn = {"role": "user" if i % 2 == 0 else "assistant", "content": piece}
        if len(json.dumps({**doc, "messages": doc["messages"] + [turn, last]}, ensure_ascii=False).encode()) > n:
            break
        doc["messages"].append(turn)
        i += 1
    doc["messages"].append(last)
    return json.dumps(doc, ensure_ascii=False)


def agent(n):
    """An agent's request of about n bytes: the system prompt, the task,
    then steps of an assistant's tool call (arguments as a JSON string),
    the tool's result (100 to 1,500 bytes of code or prose) and a short
    remark, sent again with each step; a new user message of the mixed
    text last; the tools after the messages."""
    sources = [prose(), code()]
    doc = {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a coding agent. Use the tools to read and change the repository."},
        {"role": "user", "content": "Find why the parser rejects escaped quotes and fix it."},
    ]}
    last = {"role": "user", "content": mixed(1024)[-300:]}
    at, i = [0, 0], 0
    while True:
        k = i % 2
        size = 100 + (i * 397) % 1400
        piece = sources[k][at[k]:at[k] + size] or sources[k][:size]
        at[k] = (at[k] + size) % max(len(sources[k]) - size, 1)
        call = {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{i}", "type": "function",
                "function": {"name": f"tool_{i % 12}", "arguments": json.dumps({"id": f"src/file_{i}.rs", "fields": ["status"]})}}]}
        result = {"role": "tool", "tool_call_id": f"call_{i}", "content": piece}
        remark = {"role": "assistant", "content": f"Step {i}: read {size} bytes; the escape handling is next."}
        step = [call, result, remark]
        if len(json.dumps({**doc, "messages": doc["messages"] + step + [last], "tools": TOOLS}, ensure_ascii=False).encode()) > n:
            break
        doc["messages"] += step
        i += 1
    doc["messages"].append(last)
    doc["tools"] = TOOLS
    return json.dumps(doc, ensure_ascii=False)


if __name__ == "__main__":
    for n in [8192, 102400]:
        with open(os.path.join(HERE, f"conversation-{n}.json"), "w", encoding="utf-8") as f:
            f.write(conversation(n))
    for n in [100, 2048, 8192, 32768, 102400]:
        with open(os.path.join(HERE, f"mixed-{n}.json"), "w", encoding="utf-8") as f:
            f.write(body(n))
    with open(os.path.join(HERE, "tools-8192.json"), "w", encoding="utf-8") as f:
        f.write(body(8192, tools=True))
    for n in [32768]:
        with open(os.path.join(HERE, f"agent-{n}.json"), "w", encoding="utf-8") as f:
            f.write(agent(n))
