-- wrk script: the model routed to the TLS upstream (tls-bench.sh).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- The key proxy-bench.sh configures; the mock and nginx ignore it.
wrk.headers["Authorization"] = "Bearer tg-bench-key"
wrk.body = '{"model":"via-tls","messages":[{"role":"user","content":"Say hello in one short sentence."}]}'
