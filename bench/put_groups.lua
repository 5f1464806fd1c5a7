-- put_groups.lua -- wrk script: every request creates a new sandbox group
-- (PUT with a name no other request, thread or run used).
-- Usage: wrk ... -s put_groups.lua URL -- SUBSCRIPTION RESOURCE_GROUP RUN_ID
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  sub = args[1] or "00000000-0000-0000-0000-000000000000"
  rg = args[2] or "bench"
  run = args[3] or tostring(os.time())
  counter = 0
  body = '{"location":"westeurope","tags":{"bench":"true"}}'
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local path = string.format(
    "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/sandboxGroups/r%s-t%d-%d?api-version=2026-07-01",
    sub, rg, run, tid, counter)
  return wrk.format("PUT", path, nil, body)
end
