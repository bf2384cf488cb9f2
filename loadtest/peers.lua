-- wrk script for loadtest/peers.sh: absolute-form requests (as to a forward proxy).
-- TARGET: the URL; a TARGET ending in "/u/" gets a never-repeated suffix per request (misses).
-- MODE: when "forward", asks liveweb for forward-mode replies.
local target = os.getenv("TARGET")
local prefix = os.getenv("PREFIX") or tostring(os.time())
local unique = target:sub(-3) == "/u/"
local counter = 0
if os.getenv("MODE") == "forward" then
  wrk.headers["X-Liveweb-Mode"] = "forward"
end
wrk.path = target
request = function()
  if unique then
    counter = counter + 1
    return wrk.format("GET", target .. prefix .. "-" .. counter)
  end
  return wrk.format("GET", target)
end
