-- wrk script: small non-streaming chat completions.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- The key proxy-bench.sh configures; the mock and nginx ignore it.
wrk.headers["Authorization"] = "Bearer tg-bench-key"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}]}'
