-- wrk script for loadtest/soak.sh: a mix of absolute-form requests through liveweb.
-- ORIGIN: http://host:port of the origin; PREFIX: makes this run's miss URLs unique.
-- Per 20 requests: 12 hits on 1 KiB, 1 on 64 KiB, 1 on 1 MiB, 3 misses (never-repeated
-- URLs), 2 forward-mode hits, 1 forward-mode POST (passed through, never cached).
local origin = os.getenv("ORIGIN")
local prefix = os.getenv("PREFIX") or tostring(os.time())
local n = 0
local forward = { ["X-Liveweb-Mode"] = "forward" }
local post = { ["X-Liveweb-Mode"] = "forward", ["Content-Type"] = "text/plain" }
request = function()
  n = n + 1
  local k = n % 20
  if k < 12 then
    return wrk.format("GET", origin .. "/static/1k.bin")
  elseif k == 12 then
    return wrk.format("GET", origin .. "/static/64k.bin")
  elseif k == 13 then
    return wrk.format("GET", origin .. "/static/1m.bin")
  elseif k < 17 then
    return wrk.format("GET", origin .. "/u/" .. prefix .. "-" .. n)
  elseif k < 19 then
    return wrk.format("GET", origin .. "/static/1k.bin", forward)
  end
  return wrk.format("POST", origin .. "/post", post, "payload-" .. n)
end
