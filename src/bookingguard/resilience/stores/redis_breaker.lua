-- One circuit, one atomic step. The Lua twin of bookingguard/resilience/machine.py.
-- KEYS[1]: the circuit's hash; KEYS[2]: its half-open probe lease (SET NX PX);
-- KEYS[3]: its outbox, a list of the answers that carried transitions, kept until the
-- audit has written them (a reply lost on the way back loses no transition).
-- All carry the same {hash tag}, so the script works on Redis Cluster.
-- ARGV: op, token, version, outcome, slow, failure_threshold, cooldown_ms,
--       success_threshold, lease_ms, rate_threshold ('' = off), window_ms,
--       minimum_calls, slow_enabled, slow_rate_threshold, bucket_ms
-- Returns {permitted, state, version, failure_count, retry_after_ms, transitions_json}.
-- The clock is Redis TIME (ms), so every process agrees on it. No key has a TTL
-- except the lease: an open circuit never closes because a key expired.
local hash, probe, outbox = KEYS[1], KEYS[2], KEYS[3]
-- An outbox nobody drains (no audit) keeps only its latest entries.
local OUTBOX_LIMIT = 1000
local op, token = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local transitions = {}

local function field_number(name)
  return tonumber(redis.call('HGET', hash, name) or '0')
end

local function move(to_state, reason)
  local from_state = redis.call('HGET', hash, 'state') or 'closed'
  -- The moment in ms, or one past the last version if that is later (as machine.py):
  -- versions grow across stores and a Redis restarted empty, so the history's
  -- (circuit, version) never repeats and nothing is dropped. 13 digits: cjson's
  -- 14-digit numbers carry it exactly.
  local version = redis.call('HINCRBY', hash, 'version', 1)
  if version < now then
    redis.call('HSET', hash, 'version', now)
    version = now
  end
  redis.call('HSET', hash, 'state', to_state)
  table.insert(transitions, {from_state, to_state, reason, now, version})
end

local function open(reason)
  redis.call('HSET', hash, 'opened', now, 'open_until', now + tonumber(ARGV[7]), 'successes', 0)
  redis.call('HDEL', hash, 'window')
  redis.call('DEL', probe)
  move('open', reason)
end

local function answer(permitted, retry_after)
  local h = redis.call('HMGET', hash, 'state', 'version', 'failures')
  local encoded = ''
  if #transitions > 0 then
    local snapshot = {}
    local all = redis.call('HGETALL', hash)
    for i = 1, #all, 2 do snapshot[all[i]] = all[i + 1] end
    encoded = cjson.encode({transitions = transitions, after = snapshot})
    redis.call('RPUSH', outbox, encoded)
    redis.call('LTRIM', outbox, -OUTBOX_LIMIT, -1)
  end
  return {permitted, h[1] or 'closed', tonumber(h[2] or '0'), tonumber(h[3] or '0'),
          math.max(0, math.floor(retry_after)), encoded}
end

local function reject(retry_after)
  redis.call('HINCRBY', hash, 'not_permitted', 1)
  return answer(0, retry_after)
end

local function add_to_window(outcome, slow)
  local window_ms, bucket_ms = tonumber(ARGV[11]), tonumber(ARGV[15])
  local raw = redis.call('HGET', hash, 'window')
  local buckets = {}
  if raw then buckets = cjson.decode(raw) end
  local kept, calls, failures, slow_calls = {}, 0, 0, 0
  for start, counts in pairs(buckets) do
    if tonumber(start) > now - window_ms then kept[start] = counts end
  end
  if outcome ~= 'ignored' then
    local start = tostring(now - now % bucket_ms)
    local counts = kept[start] or {0, 0, 0}
    counts[1] = counts[1] + 1
    if outcome == 'failure' then counts[2] = counts[2] + 1 end
    if slow == '1' then counts[3] = counts[3] + 1 end
    kept[start] = counts
  end
  for _, counts in pairs(kept) do
    calls, failures, slow_calls = calls + counts[1], failures + counts[2], slow_calls + counts[3]
  end
  if next(kept) == nil then
    redis.call('HDEL', hash, 'window')
  else
    redis.call('HSET', hash, 'window', cjson.encode(kept))
  end
  return calls, failures, slow_calls
end

if op == 'acquire' then
  local h = redis.call('HMGET', hash, 'state', 'version', 'failures', 'forced', 'open_until')
  local state = h[1] or 'closed'
  if state == 'closed' then
    return {1, 'closed', tonumber(h[2] or '0'), tonumber(h[3] or '0'), 0, ''}
  end
  if state == 'open' and h[4] ~= '1' and now >= tonumber(h[5] or '0') then
    redis.call('HSET', hash, 'successes', 0)
    move('half_open', 'cooldown_elapsed')
    state = 'half_open'
  end
  if state == 'half_open' then
    if redis.call('SET', probe, token, 'NX', 'PX', ARGV[9]) then
      return answer(1, 0)
    end
    return reject(redis.call('PTTL', probe))
  end
  if h[4] == '1' then return reject(tonumber(ARGV[7])) end
  return reject(tonumber(h[5]) - now)
end

if op == 'record' then
  local h = redis.call('HMGET', hash, 'state', 'version', 'failures')
  local state = h[1] or 'closed'
  if tonumber(h[2] or '0') ~= tonumber(ARGV[3]) or state == 'open' then
    return answer(0, 0)
  end
  local outcome = ARGV[4]
  if state == 'half_open' then
    if token == '' or redis.call('GET', probe) ~= token then return answer(0, 0) end
    redis.call('DEL', probe)
    if outcome == 'failure' then
      redis.call('HINCRBY', hash, 'failures', 1)
      redis.call('HSET', hash, 'last_failure', now)
      open('probe_failed')
    elseif outcome == 'success' then
      if redis.call('HINCRBY', hash, 'successes', 1) >= tonumber(ARGV[8]) then
        redis.call('HSET', hash, 'failures', 0, 'closed', now)
        redis.call('HDEL', hash, 'open_until', 'window')
        move('closed', 'probes_succeeded')
      end
    end
    return answer(1, 0)
  end
  local failures = tonumber(h[3] or '0')
  if outcome == 'failure' then
    failures = redis.call('HINCRBY', hash, 'failures', 1)
    redis.call('HSET', hash, 'last_failure', now)
  elseif outcome == 'success' and failures ~= 0 then
    failures = 0
    redis.call('HSET', hash, 'failures', 0)
  end
  if failures >= tonumber(ARGV[6]) then
    open('failure_threshold')
  elseif ARGV[10] ~= '' or ARGV[13] == '1' then
    local calls, failed, slow_calls = add_to_window(outcome, ARGV[5])
    if calls >= tonumber(ARGV[12]) then
      if ARGV[10] ~= '' and 100 * failed / calls >= tonumber(ARGV[10]) then
        open('failure_rate')
      elseif ARGV[13] == '1' and 100 * slow_calls / calls >= tonumber(ARGV[14]) then
        open('slow_call_rate')
      end
    end
  end
  return answer(1, 0)
end

if op == 'force_open' then
  if redis.call('HGET', hash, 'forced') ~= '1' then
    redis.call('HSET', hash, 'forced', 1, 'opened', now, 'successes', 0)
    redis.call('HDEL', hash, 'open_until')
    redis.call('DEL', probe)
    move('open', 'forced_open')
  end
  return answer(1, 0)
end

if op == 'reset' then
  local state = redis.call('HGET', hash, 'state') or 'closed'
  redis.call('HSET', hash, 'failures', 0, 'successes', 0, 'forced', 0)
  redis.call('HDEL', hash, 'open_until', 'window')
  redis.call('DEL', probe)
  if state ~= 'closed' then
    redis.call('HSET', hash, 'closed', now)
    move('closed', 'reset')
  end
  return answer(1, 0)
end

if op == 'adopt' then
  -- ARGV[2..9]: failures, last_failure, opened, closed, open_until, forced, version,
  -- not_permitted (times in ms, '' for none); ARGV[10]: the state, open or half_open
  -- (without its probe lease). Only a circuit Redis knows nothing of.
  if redis.call('EXISTS', hash) == 1 then return answer(0, 0) end
  local names = {'failures', 'last_failure', 'opened', 'closed', 'open_until', 'forced',
                 'version', 'not_permitted'}
  redis.call('HSET', hash, 'state', ARGV[10] == 'half_open' and 'half_open' or 'open')
  for i, name in ipairs(names) do
    if ARGV[i + 1] ~= '' then redis.call('HSET', hash, name, ARGV[i + 1]) end
  end
  return answer(1, 0)
end

return redis.error_reply('unknown breaker op ' .. tostring(op))
