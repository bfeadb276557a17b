-- wrk script: POST one job per request (`POST /api/v1/jobs/{queue}`, the URL given to wrk).
-- The job's payload comes from the environment (PAYLOAD, a JSON object; run.sh sets it), so
-- the single and the bulk route send the very same job. The credential comes from wrk's -H.
local payload = os.getenv("PAYLOAD")
assert(payload and payload:sub(1, 1) == "{", "PAYLOAD must hold the job's JSON payload")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"payload":' .. payload .. '}'
