-- wrk script: non-streaming chat completions with a ~2 KB prompt of
-- ordinary English (what the guardrails scan on every request).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer tg-bench-key"
local para = "The quarterly review went well overall. Our team shipped the new onboarding flow, and customers told us the setup now takes about half the time it used to. Support tickets about passwords dropped after we added the reset link to the login page. Next quarter we want to improve search and write better documentation. "
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant for the product team."},{"role":"user","content":"' .. string.rep(para, 6) .. '"}]}'
