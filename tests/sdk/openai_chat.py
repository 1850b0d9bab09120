"""The official OpenAI Python SDK against a running gateway.

Usage: python3 openai_chat.py http://127.0.0.1:PORT/v1 KEY
Exits non-zero (with the assertion) on any mismatch.
"""

import json
import os
import sys

import openai

base_url, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20)

reply = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello"}],
)
assert reply.object == "chat.completion", reply
assert reply.choices[0].message.content.startswith("Tollgate counts every"), reply
assert reply.usage.completion_tokens == 16, reply.usage

pieces = []
stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Say hello"}],
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
assert "".join(pieces) == reply.choices[0].message.content, pieces

# The legacy completions API, JSON and streamed.
legacy = client.completions.create(model="gpt-4o-mini", prompt="Say hello", max_tokens=16)
assert legacy.object == "text_completion", legacy
assert legacy.choices[0].text.startswith("Tollgate counts every"), legacy
assert legacy.usage.completion_tokens == 16, legacy.usage
pieces = []
for chunk in client.completions.create(model="gpt-4o-mini", prompt="Say hello", stream=True):
    if chunk.choices and chunk.choices[0].text:
        pieces.append(chunk.choices[0].text)
assert "".join(pieces) == legacy.choices[0].text, pieces

# The Responses API, JSON and streamed: the SDK's own types, the text
# whole in `output_text`, and the streamed deltas adding up to it; through a
# provider that serves it (`native`, where the configuration has it) and
# translated to chat (`gpt-4o-mini`).
# Embeddings: the SDK asks for base64 unless told otherwise and decodes it;
# floats when asked.
vectors = client.embeddings.create(model="gpt-4o-mini", input=["the finance team", "the finance report"])
assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 64, vectors
assert vectors.usage.prompt_tokens > 0, vectors.usage
floats = client.embeddings.create(model="gpt-4o-mini", input="the finance team", encoding_format="float", dimensions=16)
assert len(floats.data[0].embedding) == 16, floats
assert abs(sum(x * x for x in vectors.data[0].embedding) - 1.0) < 1e-3, "unit length, decoded from base64"

listed = [m.id for m in client.models.list()]
for model in [m for m in ["native", "gpt-4o-mini"] if m in listed]:
    response = client.responses.create(model=model, input="Say hello", instructions="Be brief.")
    assert response.object == "response" and response.status == "completed", response
    assert response.output_text.startswith("Tollgate counts every"), response
    assert response.usage.output_tokens == 16, response.usage
    pieces, completed = [], None
    for event in client.responses.create(
        model=model,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}],
        stream=True,
    ):
        if event.type == "response.output_text.delta":
            pieces.append(event.delta)
        elif event.type == "response.completed":
            completed = event.response
    assert completed is not None and completed.usage.output_tokens == 16, completed
    assert "".join(pieces) == response.output_text == completed.output_text, pieces
    with client.responses.stream(model=model, input="Say hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == response.output_text, (model, final)
    # A function call round trip (the mock calls the tool when asked to
    # with `x-mock-tool`), streamed through the SDK's accumulator.
    tools = [{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    with client.responses.stream(
        model=model, input="Weather in Paris?", tools=tools, extra_headers={"x-mock-tool": "weather"}
    ) as stream:
        called = stream.get_final_response()
    call = called.output[0]
    assert call.type == "function_call" and call.name == "weather", (model, called)
    assert json.loads(call.arguments) == {"city": "Paris"}, (model, call)
    follow = client.responses.create(
        model=model,
        tools=tools,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": "weather", "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "12 C, clear"},
        ],
    )
    assert follow.output_text.startswith("Tollgate counts every"), (model, follow)
    if model == "gpt-4o-mini":
        # The Agents SDK's way across turns: `previous_response_id`. This
        # model's provider keeps no responses; the gateway kept the streamed
        # turn, and the provider receives it before the tool's output (the
        # mock answers with the body it received).
        chained = client.responses.create(
            model=model,
            tools=tools,
            previous_response_id=called.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "12 C, clear"}],
            extra_headers={"x-mock-echo": "reply"},
        )
        sent = json.loads(chained.output_text)
        roles = [m["role"] for m in sent["messages"]]
        assert roles == ["user", "assistant", "tool"], sent
        assert sent["messages"][1]["tool_calls"][0]["id"] == call.call_id, sent

models = [m.id for m in client.models.list()]
assert "gpt-4o-mini" in models, models

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model must raise")
except openai.NotFoundError as e:
    assert e.status_code == 404
    assert e.code == "model_not_found", e.body

# Authentication and access errors surface as the SDK's own exceptions.
try:
    openai.OpenAI(base_url=base_url, api_key="tg-not-a-key", max_retries=0).models.list()
    raise AssertionError("an unknown key must raise")
except openai.AuthenticationError as e:
    assert e.status_code == 401 and e.code == "invalid_api_key", e.body

if len(sys.argv) > 3:
    narrow = openai.OpenAI(base_url=base_url, api_key=sys.argv[3], max_retries=0)
    try:
        narrow.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("a model outside the key's list must raise")
    except openai.NotFoundError as e:
        # Answered as a model that does not exist: no tenant learns which
        # models other teams use.
        assert e.status_code == 404 and e.code == "model_not_found", e.body

print("openai sdk: ok")

# The answer cache (where the test's configuration has [cache] and says so
# with TOLLGATE_SDK_CACHE=1): the same
# temperature-0 request twice, JSON and streamed with and without the
# usage chunk: the second is a hit, and the SDK reads it exactly as it read
# the first.
def cached(stream, usage):
    kwargs = dict(
        model="gpt-4o-mini",
        temperature=0,
        messages=[{"role": "user", "content": f"Cache me ({stream}, {usage})"}],
    )
    if stream:
        kwargs["stream"] = True
    if usage:
        kwargs["stream_options"] = {"include_usage": True}
    seen = []
    for expected in ["miss", "hit"]:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        assert raw.headers.get("x-tollgate-cache") == expected, (expected, dict(raw.headers))
        parsed = raw.parse()
        if stream:
            chunks = list(parsed)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            usages = [c.usage.model_dump() for c in chunks if c.usage]
            seen.append((text, usages))
        else:
            seen.append((parsed.choices[0].message.content, [parsed.usage.model_dump()]))
    assert seen[0] == seen[1], seen
    text, usages = seen[0]
    assert text.startswith("Tollgate counts every"), text
    return usages


if os.environ.get("TOLLGATE_SDK_CACHE") == "1":
    assert len(cached(False, False)) == 1
    assert cached(True, False) == [], "no usage chunk unless asked for"
    with_usage = cached(True, True)
    assert len(with_usage) == 1 and with_usage[0]["completion_tokens"] > 0, with_usage
    print("openai sdk cache: ok")
