-- wrk script for bench/run.py: POST the JSON body in the file $BENCH_BODY and
-- print the figures as one JSON line (the same line as harness/wrk_predict.lua).
-- No Content-Type is set beyond JSON, so every server parses the same bytes.
local f = assert(io.open(os.getenv("BENCH_BODY"), "r"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  local ms = function(p) return latency:percentile(p) / 1000.0 end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_s": %.3f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_ms": {"p50": %.3f, "p95": %.3f, "p99": %.3f, "max": %.3f}}\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
    ms(50), ms(95), ms(99), latency.max / 1000.0))
end
