-- wrk script: POST BULK_JOBS jobs per request (`POST /api/v1/jobs/{queue}/bulk`, the URL
-- given to wrk; 1 to 1,000 items). Every item is the job of enqueue.lua (PAYLOAD from the
-- environment), without idempotency keys, so every item is a new job. The body is built
-- once; each request sends the same bytes.
local payload = os.getenv("PAYLOAD")
assert(payload and payload:sub(1, 1) == "{", "PAYLOAD must hold the job's JSON payload")
local n = tonumber(os.getenv("BULK_JOBS") or "1000")
assert(n and n >= 1 and n <= 1000, "BULK_JOBS must be 1 to 1000")
local items = {}
for i = 1, n do items[i] = '{"payload":' .. payload .. '}' end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"jobs":[' .. table.concat(items, ",") .. ']}'
