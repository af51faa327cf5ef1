-- Replays pre-built raw HTTP/1.1 requests from a file, in order, each thread taking every
-- nthreads-th one, so each request (each webhook-id) is sent once per run.
--   wrk -t1 -c32 -d4s -s bench/replay.lua http://127.0.0.1:PORT -- requests.bin 1
-- File format: "<byte length>\n<raw request bytes>" repeated (bench/wrk.py writes it).
-- Requests are returned pre-formatted, so wrk does no per-request formatting and no Lua
-- response() hook runs: the generator costs what wrk itself costs.
-- If a thread runs out it starts over and counts the wrap; bench/wrk.py treats a wrap
-- as a failed measurement for the gateway (duplicates are answered from the dedupe path).

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local index = 0
wrapped = 0

function init(args)
  local path, nthreads = args[1], tonumber(args[2] or "1")
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local pos, i = 1, 0
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    local len = tonumber(data:sub(pos, nl - 1))
    if i % nthreads == id then
      requests[#requests + 1] = data:sub(nl + 1, nl + len)
    end
    i = i + 1
    pos = nl + 1 + len
  end
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
    wrapped = wrapped + 1
  end
  return requests[index]
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("wrapped")
  end
  io.write(string.format("replay_wrapped %d\n", total))
end
