-- wrk script: POST {} and count responses by status (200, 429, other); prints
-- "Statuses: ok N throttled N other N" for benchmarks/overload.py.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, throttled, other = 0, 0, 0
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 429 then
    throttled = throttled + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local o, t, x = 0, 0, 0
  for _, thread in ipairs(threads) do
    o = o + thread:get("ok")
    t = t + thread:get("throttled")
    x = x + thread:get("other")
  end
  io.write(string.format("Statuses: ok %d throttled %d other %d\n", o, t, x))
end
