"""The official Anthropic Python SDK against a running gateway's /v1/messages.

Usage: python3 anthropic_messages.py http://127.0.0.1:PORT KEY
"""

import sys

import anthropic

base_url, key = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20)

# An OpenAI-kind upstream behind the Anthropic front, and an Anthropic one.
for model in ["gpt-4o-mini", "claude-sonnet"]:
    message = client.messages.create(
        model=model, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert message.type == "message", message
    text = message.content[0].text
    assert text.startswith("Tollgate counts every"), message
    assert message.usage.output_tokens == 16, message.usage

    with client.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "Say hello"}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed == text, (model, streamed, text)
    assert final.stop_reason == "end_turn", final

# Token counts: Anthropic's own for a Claude target, the gateway's for the
# others.
for model in ["claude-sonnet", "gpt-4o-mini"]:
    counted = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Say hello"}])
    assert counted.input_tokens > 0, (model, counted)

try:
    anthropic.Anthropic(base_url=base_url, api_key="tg-not-a-key", max_retries=0).messages.create(
        model="gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": "x"}]
    )
    raise AssertionError("an unknown key must raise")
except anthropic.AuthenticationError as e:
    assert e.status_code == 401

print("anthropic sdk: ok")
