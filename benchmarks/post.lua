-- wrk script: every request is POST {} with a JSON content type. It also counts
-- responses carrying X-Amz-Function-Error (a Lambda function error sent with 200),
-- which wrk's own non-2xx count cannot see, and prints "Function errors: N".
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  function_errors = 0
end

function response(status, headers, body)
  for name, _ in pairs(headers) do
    if string.lower(name) == "x-amz-function-error" then
      function_errors = function_errors + 1
    end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("function_errors")
  end
  io.write(string.format("Function errors: %d\n", total))
end
