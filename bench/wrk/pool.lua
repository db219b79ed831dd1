-- One wrk script for both stacks of `make bench-peer`, so the two are loaded
-- the same way: every request takes the next line of a pool file, either as
-- its JSON body or as its bearer token.
--   wrk -tT ... -s pool.lua URL -- METHOD PATH body|bearer POOL_FILE cycle|once T
-- `cycle` goes round the pool (logins, access tokens); `once` sends each line
-- at most once (single-use refresh tokens): a thread that runs out stops, and
-- the summary says so. Threads take disjoint slices of the pool.
-- done() prints one line: JSON {requests, seconds, latency, socket errors,
-- answers by status, exhausted}.
threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  method, path, kind, mode = args[1], args[2], args[3], args[5]
  local nthreads = tonumber(args[6]) or 1
  pool, i = {}, 0
  local line_no = 0
  for line in io.lines(args[4]) do
    if #line > 0 then
      if line_no % nthreads == id - 1 then pool[#pool + 1] = line end
      line_no = line_no + 1
    end
  end
  statuses, exhausted, stopped = {}, 0, false
  headers = kind == "body" and { ["Content-Type"] = "application/json" } or {}
end

function request()
  i = i + 1
  if i > #pool then
    if mode == "once" then
      exhausted, stopped = 1, true
      wrk.thread:stop()
      return wrk.format("GET", path)
    end
    i = 1
  end
  if kind == "body" then
    return wrk.format(method, path, headers, pool[i])
  end
  return wrk.format(method, path, { ["Authorization"] = "Bearer " .. pool[i] })
end

function response(status, hdrs, body)
  -- the placeholder sent after the pool ran out is not a measured request
  if not stopped then statuses[status] = (statuses[status] or 0) + 1 end
end

function done(summary, latency, requests)
  local st, exhausted_threads = {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses") or {}) do st[k] = (st[k] or 0) + v end
    exhausted_threads = exhausted_threads + (t:get("exhausted") or 0)
  end
  local parts = {}
  for k, v in pairs(st) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests":%d,"seconds":%.3f,"p50":%.2f,"p99":%.2f,"max":%.2f,' ..
    '"socketErrors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"statuses":{%s},"exhaustedThreads":%d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ","), exhausted_threads))
end
