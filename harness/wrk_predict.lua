-- wrk script: POST one flower to the URL (or the JSON in the file $WRK_BODY) and print
-- the figures as one JSON line. Used by harness/load.py (run_wrk), for the scorecard and the
-- benchmark alike (every server gets the same bytes); any non-2xx answer counts as an error.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local body = os.getenv("WRK_BODY")
if body then
  local f = assert(io.open(body, "r"))
  wrk.body = f:read("*a")
  f:close()
else
  wrk.body = '{"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}'
end

function done(summary, latency, requests)
  local e = summary.errors
  local ms = function(p) return latency:percentile(p) / 1000.0 end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.3f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_ms": {"p50": %.3f, "p95": %.3f, "p99": %.3f, "max": %.3f}}\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
    ms(50), ms(95), ms(99), latency.max / 1000.0))
end
