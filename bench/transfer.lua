-- transfer.lua: wrk script for twopc's transfer benchmark (see bench/README.md).
--
-- Every request is POST /v1/transactions with one money transfer between two
-- distinct participants picked at random from TRANSFER_PARTICIPANTS: on one
-- participant
--     UPDATE accounts SET balance = balance - $1 WHERE id = $2
-- on the other
--     UPDATE accounts SET balance = balance + $1 WHERE id = $2
-- each with amount 1, a random account id in 1..ACCOUNTS and expect_rows 1.
--
--   wrk -t2 -c32 -d10s --latency -s bench/transfer.lua http://127.0.0.1:PORT -- [ACCOUNTS]
--
-- Environment (a wrk argument after "--" wins over TRANSFER_ACCOUNTS):
--   TRANSFER_ACCOUNTS      accounts per participant, ids 1..N (default 10000)
--   TRANSFER_PARTICIPANTS  comma-separated participant names (default bank_a,bank_b)
--   TRANSFER_TIMEOUT_MS    the request's timeout_ms (default 5000)
--   TRANSFER_STATUS_DETAIL if set to 1, count every HTTP status and print the
--                          counts; this defines wrk's response() callback, which
--                          makes wrk parse every response and slows it down, so
--                          it is off by default (errors then come from
--                          summary.errors.status: responses with status >= 400)
--
-- done() prints machine-readable lines "transfer.KEY=VALUE" (bench/run parses
-- them): requests, ok, errors (status >= 400 plus socket errors and timeouts),
-- errors_status, errors_connect, errors_read, errors_write, errors_timeout,
-- duration_s, tx_per_s (successful transfers per second), mean_ms, p50_ms,
-- p90_ms, p99_ms, max_ms, and with TRANSFER_STATUS_DETAIL status_NNN=COUNT.

local accounts = tonumber(os.getenv("TRANSFER_ACCOUNTS") or "") or 10000
local timeout_ms = tonumber(os.getenv("TRANSFER_TIMEOUT_MS") or "") or 5000
local participants = {}
for name in string.gmatch(os.getenv("TRANSFER_PARTICIPANTS") or "bank_a,bank_b", "[^,%s]+") do
   participants[#participants + 1] = name
end
if #participants < 2 then
   error("transfer.lua: TRANSFER_PARTICIPANTS must name at least two participants")
end

wrk.method = "POST"
wrk.path = "/v1/transactions"
wrk.headers["Content-Type"] = "application/json"

-- ------------------------------------------------------------ main state --
-- setup() runs once per thread in the main Lua state, before the threads start.

local threads = {}
local next_thread_id = 0

function setup(thread)
   next_thread_id = next_thread_id + 1
   thread:set("thread_id", next_thread_id)
   threads[#threads + 1] = thread
end

-- ---------------------------------------------------------- thread state --
-- Each wrk thread runs its own copy of this script in its own Lua state.

thread_id = 0      -- set by setup() before init() runs
status_counts = {} -- only filled when TRANSFER_STATUS_DETAIL=1

function init(args)
   if args and args[1] and tonumber(args[1]) then
      accounts = tonumber(args[1])
   end
   if accounts < 1 then
      error("transfer.lua: the number of accounts must be at least 1")
   end
   -- Every thread has its own Lua state and so its own random generator: give
   -- each one a different seed, else all threads send the same transfers.
   math.randomseed(os.time() * 1000 + thread_id * 7919 + math.floor(os.clock() * 1000000) % 1000)
   for _ = 1, 10 do math.random() end
end

local debit_sql = "UPDATE accounts SET balance = balance - $1 WHERE id = $2"
local credit_sql = "UPDATE accounts SET balance = balance + $1 WHERE id = $2"

function request()
   local n = #participants
   local i = math.random(n)
   local j = math.random(n - 1)
   if j >= i then j = j + 1 end -- j: uniformly one of the others
   local body = string.format(
      '{"branches":{' ..
      '"%s":[{"sql":"%s","params":[1,%d],"expect_rows":1}],' ..
      '"%s":[{"sql":"%s","params":[1,%d],"expect_rows":1}]' ..
      '},"timeout_ms":%d}',
      participants[i], debit_sql, math.random(accounts),
      participants[j], credit_sql, math.random(accounts),
      timeout_ms)
   return wrk.format(nil, nil, nil, body)
end

if os.getenv("TRANSFER_STATUS_DETAIL") == "1" then
   function response(status, headers, body)
      status_counts[status] = (status_counts[status] or 0) + 1
   end
end

-- ------------------------------------------------------------------ done --
-- done() runs once in the main state after all threads finished.

function done(summary, latency, requests)
   local e = summary.errors
   local duration_s = summary.duration / 1e6
   local socket_errors = e.connect + e.read + e.write + e.timeout
   local ok = summary.requests - e.status
   local function ms(us) return string.format("%.3f", us / 1000) end
   local function out(key, value) io.write("transfer.", key, "=", tostring(value), "\n") end

   out("requests", summary.requests)
   out("ok", ok)
   out("errors", e.status + socket_errors)
   out("errors_status", e.status)
   out("errors_connect", e.connect)
   out("errors_read", e.read)
   out("errors_write", e.write)
   out("errors_timeout", e.timeout)
   out("duration_s", string.format("%.3f", duration_s))
   out("tx_per_s", string.format("%.1f", duration_s > 0 and ok / duration_s or 0))
   out("mean_ms", ms(latency.mean))
   out("p50_ms", ms(latency:percentile(50)))
   out("p90_ms", ms(latency:percentile(90)))
   out("p99_ms", ms(latency:percentile(99)))
   out("max_ms", ms(latency.max))

   if os.getenv("TRANSFER_STATUS_DETAIL") == "1" then
      local total = {}
      for _, thread in ipairs(threads) do
         local counts = thread:get("status_counts")
         if type(counts) == "table" then
            for status, count in pairs(counts) do
               total[status] = (total[status] or 0) + count
            end
         end
      end
      local codes = {}
      for status in pairs(total) do codes[#codes + 1] = status end
      table.sort(codes)
      for _, status in ipairs(codes) do
         out("status_" .. status, total[status])
      end
   end
end
