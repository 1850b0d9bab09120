-- wrk script: non-streaming chat completions with the body in the file
-- named by $BODY (bench/prompts/*.json).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- The key the benchmark configurations hold; the mock and nginx ignore it.
wrk.headers["Authorization"] = "Bearer tg-bench-key"
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
