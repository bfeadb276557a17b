-- wrk script: POST one email job per request with the admin token from $TOKEN.
wrk.method = "POST"
wrk.path = "/api/v1/jobs/email"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"payload":{"to":["soc@example.com"],"subject":"bench","body":{"text":"hello"}}}'

done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("requests=%d non2xx=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, non2xx, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
