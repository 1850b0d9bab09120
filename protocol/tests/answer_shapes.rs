//! Answer shapes written from other implementations' public documentation
//! (not from our mock), each re-serialized with random whitespace and key
//! order: what the gateway reads of them (`read_answer`) must not change.
//!
//! Sources, as documented in 2025–2026: OpenAI's chat completion object (one
//! with a spoken answer's audio tokens) and
//! chunk (with `stream_options.include_usage`); Azure OpenAI's
//! `prompt_filter_results` and `content_filter_results`; vLLM's OpenAI
//! server (`prompt_tokens_details: null`, `stop_reason`); Ollama's OpenAI
//! compatibility; llama.cpp's server (`timings`); LM Studio; Groq
//! (`x_groq`); DeepSeek (`prompt_cache_hit_tokens`,
//! `completion_tokens_details.reasoning_tokens`); Mistral; Gemini's
//! OpenAI-compatible endpoint; Anthropic's Messages API (a message with
//! cache reads and writes, one with writes of both lifetimes
//! (`cache_creation`), and the `message_start` and `message_delta` events
//! that carry usage).

use proptest::prelude::*;
use serde_json::Value;
use tollgate_protocol::openai::{read_answer, Usage};

/// (name, document, what must be read).
fn corpus() -> Vec<(&'static str, &'static str, Option<Usage>, bool)> {
    let u = |prompt, completion, cached| Some(Usage { prompt, completion, cached, ..Usage::default() });
    vec![
        (
            "openai completion",
            r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The image shows a wooden boardwalk.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#,
            u(1117, 46, 0),
            false,
        ),
        (
            // The audio guide's spoken answer: its audio priced apart.
            "openai audio completion",
            r#"{"id":"chatcmpl-123","object":"chat.completion","created":1728000000,"model":"gpt-4o-audio-preview-2024-12-17","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"audio":{"id":"audio_abc123","expires_at":1729018505,"data":"UklGRiQAAABXQVZF","transcript":"Yes, golden retrievers are known to be good family dogs."}},"finish_reason":"stop"}],"usage":{"prompt_tokens":17,"completion_tokens":109,"total_tokens":126,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":6},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":87,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"system_fingerprint":"fp_abc"}"#,
            Some(Usage { prompt: 17, completion: 109, audio_prompt: 6, audio_completion: 87, ..Usage::default() }),
            false,
        ),
        (
            "openai usage chunk",
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":4}}}"#,
            u(9, 12, 4),
            true,
        ),
        (
            "openai content chunk",
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            None,
            false,
        ),
        (
            "azure openai",
            r#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"}},"finish_reason":"stop","index":0,"message":{"content":"Hi","role":"assistant"}}],"created":1724456789,"id":"chatcmpl-9zS","model":"gpt-4o-2024-05-13","object":"chat.completion","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}],"system_fingerprint":"fp_abc","usage":{"completion_tokens":1,"prompt_tokens":9,"total_tokens":10}}"#,
            u(9, 1, 0),
            false,
        ),
        (
            "vllm",
            r#"{"id":"chatcmpl-b1d8","object":"chat.completion","created":1727000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"message":{"role":"assistant","reasoning_content":null,"content":"Paris.","tool_calls":[]},"logprobs":null,"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":42,"total_tokens":45,"completion_tokens":3,"prompt_tokens_details":null},"prompt_logprobs":null}"#,
            u(42, 3, 0),
            false,
        ),
        (
            "ollama",
            r#"{"id":"chatcmpl-812","object":"chat.completion","created":1731300000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":3,"total_tokens":29}}"#,
            u(26, 3, 0),
            false,
        ),
        (
            "llama.cpp server",
            r#"{"choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":"Hello!"}}],"created":1731400000,"model":"gpt-3.5-turbo","system_fingerprint":"b4067","object":"chat.completion","usage":{"completion_tokens":3,"prompt_tokens":18,"total_tokens":21},"id":"chatcmpl-Xk","timings":{"prompt_n":18,"prompt_ms":10.3,"predicted_n":3,"predicted_ms":21.9}}"#,
            u(18, 3, 0),
            false,
        ),
        (
            "lm studio",
            r#"{"id":"chatcmpl-lms","object":"chat.completion","created":1731500000,"model":"qwen2.5-7b-instruct","choices":[{"index":0,"logprobs":null,"finish_reason":"stop","message":{"role":"assistant","content":"OK"}}],"usage":{"prompt_tokens":11,"completion_tokens":2,"total_tokens":13},"stats":{},"system_fingerprint":"qwen2.5-7b-instruct"}"#,
            u(11, 2, 0),
            false,
        ),
        (
            "groq",
            r#"{"id":"chatcmpl-f51b","object":"chat.completion","created":1730241104,"model":"llama3-8b-8192","choices":[{"index":0,"message":{"role":"assistant","content":"Fast"},"logprobs":null,"finish_reason":"stop"}],"usage":{"queue_time":0.037,"prompt_tokens":18,"prompt_time":0.000680,"completion_tokens":556,"completion_time":0.46,"total_tokens":574,"total_time":0.46},"system_fingerprint":"fp_179b0f92c9","x_groq":{"id":"req_01jbd"}}"#,
            u(18, 556, 0),
            false,
        ),
        (
            "deepseek",
            r#"{"id":"930c60df","object":"chat.completion","created":1705651502,"model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant","content":"9.11 < 9.8","reasoning_content":"Compare..."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":16,"completion_tokens":300,"total_tokens":316,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":260},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":16},"system_fingerprint":"fp_a1b2"}"#,
            u(16, 300, 0),
            false,
        ),
        (
            "mistral",
            r#"{"id":"cmpl-e5cc70bb","object":"chat.completion","model":"mistral-small-latest","usage":{"prompt_tokens":16,"completion_tokens":34,"total_tokens":50},"created":1702256327,"choices":[{"index":0,"message":{"content":"Bonjour","tool_calls":null,"role":"assistant"},"finish_reason":"stop"}]}"#,
            u(16, 34, 0),
            false,
        ),
        (
            "gemini openai-compatible",
            r#"{"choices":[{"finish_reason":"stop","index":0,"message":{"content":"Hello","role":"assistant"}}],"created":1740000000,"id":"Zc2xZ","model":"gemini-2.0-flash","object":"chat.completion","usage":{"completion_tokens":1,"prompt_tokens":4,"total_tokens":5}}"#,
            u(4, 1, 0),
            false,
        ),
        (
            "anthropic message",
            r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[{"type":"text","text":"Hello!"}],"model":"claude-sonnet-4-5","stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"output_tokens":6,"service_tier":"standard"}}"#,
            u(2060, 6, 2048),
            false,
        ),
        (
            // The prompt caching guide's usage with writes of both
            // lifetimes: the hour-long ones are billed apart.
            "anthropic message with hour-long cache writes",
            r#"{"id":"msg_01","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],"model":"claude-sonnet-4-5","stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2048,"cache_read_input_tokens":1800,"cache_creation_input_tokens":556,"output_tokens":503,"cache_creation":{"ephemeral_5m_input_tokens":456,"ephemeral_1h_input_tokens":100}}}"#,
            Some(Usage {
                prompt: 4404,
                completion: 503,
                cached: 1800,
                cache_write: 556,
                cache_write_1h: 100,
                ..Usage::default()
            }),
            false,
        ),
        (
            "anthropic message_start",
            r#"{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            u(25, 1, 0),
            false,
        ),
        // Alone, a `message_delta` reports the output but not the
        // input, which comes in `message_start`, with which a stream
        // merges it: the prompt is marked unreported (a report without
        // one billed its prompt as 0; the gateway counts it).
        (
            "anthropic message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            Some(Usage { completion: 15, prompt_unreported: true, ..Usage::default() }),
            false,
        ),
        (
            "a tool named prompt_tokens",
            r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"prompt_tokens","arguments":"{\"completion_tokens\":0}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":120000,"completion_tokens":245,"total_tokens":120245}}"#,
            u(120_000, 245, 0),
            false,
        ),
    ]
}

/// Up to two whitespace bytes drawn from `space`.
fn ws(space: &mut impl Iterator<Item = u8>, out: &mut String) {
    for _ in 0..space.next().unwrap_or(0) % 3 {
        out.push([' ', '\n', '\t', '\r'][(space.next().unwrap_or(0) % 4) as usize]);
    }
}

/// Writes `v` with its object keys in an order drawn from `order` and
/// whitespace drawn from `space`.
fn reserialize(
    v: &Value,
    order: &mut impl Iterator<Item = u32>,
    space: &mut impl Iterator<Item = u8>,
    out: &mut String,
) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            // A random permutation, one draw per swap.
            for i in (1..entries.len()).rev() {
                let j = order.next().unwrap_or(0) as usize % (i + 1);
                entries.swap(i, j);
            }
            out.push('{');
            for (n, (k, v)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                ws(space, out);
                out.push_str(&serde_json::to_string(k).expect("key"));
                ws(space, out);
                out.push(':');
                ws(space, out);
                reserialize(v, order, space, out);
                ws(space, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            ws(space, out);
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                    ws(space, out);
                }
                reserialize(item, order, space, out);
            }
            ws(space, out);
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).expect("scalar")),
    }
}

#[test]
fn every_documented_shape_reads_as_expected() {
    for (name, doc, usage, no_choices) in corpus() {
        let facts = read_answer(doc.as_bytes()).unwrap_or_else(|| panic!("{name}: not read"));
        assert_eq!((facts.usage(), facts.no_choices), (usage, no_choices), "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn whitespace_and_key_order_change_nothing(
        which in 0usize..16,
        order in proptest::collection::vec(any::<u32>(), 0..400),
        space in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let corpus = corpus();
        let (name, doc, usage, no_choices) = corpus[which % corpus.len()];
        let value: Value = serde_json::from_str(doc).expect("valid JSON");
        let mut out = String::new();
        reserialize(&value, &mut order.into_iter(), &mut space.into_iter(), &mut out);
        let facts = read_answer(out.as_bytes()).map(|f| (f.usage(), f.no_choices));
        prop_assert_eq!(facts, Some((usage, no_choices)), "{}: {}", name, out);
    }
}
