-- wrk script for TensorZero's OpenAI-compatible endpoint: the body in the
-- file named by $BODY, its model named as TensorZero names a model of its
-- configuration (`tensorzero::model_name::gpt-4o-mini`), posted to
-- /openai/v1/chat/completions. No key: TensorZero has no client keys.
wrk.method = "POST"
wrk.path = "/openai/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY"), "rb"))
local body, n = f:read("*a"):gsub('"model": *"gpt%-4o%-mini"', '"model": "tensorzero::model_name::gpt-4o-mini"', 1)
f:close()
assert(n == 1, "the body names no gpt-4o-mini model")
wrk.body = body
