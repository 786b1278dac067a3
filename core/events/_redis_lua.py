"""Lua scripts of the Redis Streams event store.

Each runs atomically on the server, so two cores sharing one Redis never
interleave inside a dedupe check, a claim, an attempt-checked ack or a trim.
Stream ids are compared as (milliseconds, sequence) pairs.
"""

from __future__ import annotations

_IDS = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return {tonumber(ms), tonumber(seq)}
end
local function less(a, b)
  return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end
local function render(p)
  return string.format('%d-%d', p[1], p[2])
end
local function successor(id)
  local p = parse(id)
  return {p[1], p[2] + 1}
end
local function fields(flat)
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end
local function group_info(key)
  local result = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local info = fields(g)
    result[#result + 1] = info
  end
  return result
end
"""

# KEYS: stream and dedupe key of each event, in order. ARGV: window ms, then each event's data.
# Returns {duplicate, entry id} per event. One call stores a whole batch.
APPEND = """
local window = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  local stream, dedupe = KEYS[2 * i - 1], KEYS[2 * i]
  local seen = false
  if window > 0 then seen = redis.call('GET', dedupe) end
  if seen then
    out[#out + 1] = {1, seen}
  else
    local id = redis.call('XADD', stream, '*', 'd', ARGV[i + 1])
    if window > 0 then redis.call('SET', dedupe, id, 'PX', window) end
    out[#out + 1] = {0, id}
  end
end
return out
"""

# KEYS: subscription hash, subscription set, then every stream the group reads.
# ARGV: types (canonical JSON), group (= subscription name), the plugin's key
# prefix (`<plugin-id>/`), the most subscriptions one plugin may hold.
# Returns {1, types} created, {0, types} existing, {-1, types} other types, {-2, ''} over the cap.
SUBSCRIBE = """
local existing = redis.call('HGET', KEYS[1], 'types')
if existing and existing ~= ARGV[1] then return {-1, existing} end
if not existing then
  local held, prefix = 0, ARGV[3]
  for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if string.sub(name, 1, #prefix) == prefix then held = held + 1 end
  end
  if held >= tonumber(ARGV[4]) then return {-2, ''} end
end
for i = 3, #KEYS do
  -- '$': a new subscription receives events appended from now on. An existing
  -- group is kept (BUSYGROUP); a missing one (its stream was deleted) is recreated.
  local ok = redis.pcall('XGROUP', 'CREATE', KEYS[i], ARGV[2], '$', 'MKSTREAM')
  if type(ok) == 'table' and ok.err and not string.find(ok.err, 'BUSYGROUP') then
    return redis.error_reply(ok.err)
  end
end
if existing then return {0, existing} end
redis.call('HSET', KEYS[1], 'types', ARGV[1], 'lost', 0)
redis.call('SADD', KEYS[2], ARGV[2])
return {1, ARGV[1]}
"""

# KEYS: dead-letter stream, then the group's streams (types..., replay).
# ARGV: group, consumer, count, ack timeout ms, max attempts, now ms, rotation,
#       then the event type of each type stream (the replay stream carries its own).
# Returns {deliveries, last ids}: a delivery is {stream index, id, attempt, fields or false};
# last ids (only when nothing was delivered) are the group's last-delivered ids,
# from which the caller blocks on XREAD.
READ = (
    _IDS
    + """
local group, consumer = ARGV[1], ARGV[2]
local count, min_idle, max_attempts = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now, rotation = ARGV[6], tonumber(ARGV[7])
local n = #KEYS - 1
local out = {}
for j = 0, n - 1 do
  if count <= 0 then break end
  local k = 2 + (j + rotation) % n
  for _, p in ipairs(redis.call('XPENDING', KEYS[k], group, 'IDLE', min_idle, '-', '+', count)) do
    local id, deliveries = p[1], p[4]
    local entry = redis.call('XRANGE', KEYS[k], id, id)
    if #entry == 0 then
      -- Trimmed while pending. XCLAIM would silently drop it from the pending
      -- list, so hand it out without data (a visible loss) and settle it here.
      redis.call('XACK', KEYS[k], group, id)
      out[#out + 1] = {k - 1, id, deliveries + 1, false}
      count = count - 1
    elseif deliveries >= max_attempts then
      local f = fields(entry[1][2])
      redis.call('XADD', KEYS[1], '*', 't', f['t'] or ARGV[7 + k - 1], 'p', f['p'] or id, 'a', deliveries,
        'r', 'delivery attempts exhausted (' .. deliveries .. ')', 'at', now, 'd', f['d'])
      redis.call('XACK', KEYS[k], group, id)
    else
      -- Without JUSTID, XCLAIM increments the delivery count: the attempt
      -- reported is the count read back after the claim.
      local claimed = redis.call('XCLAIM', KEYS[k], group, consumer, min_idle, id)
      if #claimed > 0 then
        local after = redis.call('XPENDING', KEYS[k], group, id, id, 1)
        out[#out + 1] = {k - 1, id, after[1][4], claimed[1][2]}
        count = count - 1
      end
    end
    if count <= 0 then break end
  end
end
for j = 0, n - 1 do
  if count <= 0 then break end
  local k = 2 + (j + rotation) % n
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', KEYS[k], '>')
  if got then
    for _, e in ipairs(got[1][2]) do
      out[#out + 1] = {k - 1, e[1], 1, e[2]}
      count = count - 1
    end
  end
end
local last = {}
if #out == 0 then
  for k = 2, #KEYS do
    last[k - 1] = '0-0'
    for _, g in ipairs(group_info(KEYS[k])) do
      if g['name'] == group then last[k - 1] = g['last-delivered-id'] end
    end
  end
end
return {out, last}
"""
)

# KEYS: the stream of each delivery. ARGV: group, idle ms, then id and attempt per key.
# ACK settles a delivery only if its attempt is still the current one (a stale
# ack after a claim by another consumer is ignored); NACK makes it due now.
ACK = """
local current, order = {}, {}
for i = 1, #KEYS do
  local id, attempt = ARGV[1 + 2 * i], tonumber(ARGV[2 + 2 * i])
  local p = redis.call('XPENDING', KEYS[i], ARGV[1], id, id, 1)
  if #p > 0 and p[1][4] == attempt then
    if current[KEYS[i]] == nil then
      current[KEYS[i]] = {}
      order[#order + 1] = KEYS[i]
    end
    table.insert(current[KEYS[i]], id)
  end
end
local settled = 0
for _, key in ipairs(order) do
  -- One multi-id XACK per stream.
  settled = settled + redis.call('XACK', key, ARGV[1], unpack(current[key]))
end
return settled
"""

NACK = """
local settled = 0
for i = 1, #KEYS do
  local id, attempt = ARGV[1 + 2 * i], tonumber(ARGV[2 + 2 * i])
  local p = redis.call('XPENDING', KEYS[i], ARGV[1], id, id, 1)
  if #p > 0 and p[1][4] == attempt then
    -- JUSTID keeps the delivery count; IDLE makes it due for the next read.
    redis.call('XCLAIM', KEYS[i], ARGV[1], p[1][2], 0, id, 'IDLE', ARGV[2], 'JUSTID')
    settled = settled + 1
  end
end
return settled
"""

# KEYS: dead-letter stream, replay stream. ARGV: dead-letter ids (none: all).
REPLAY = """
local entries = {}
if #ARGV == 0 then
  entries = redis.call('XRANGE', KEYS[1], '-', '+')
else
  for _, id in ipairs(ARGV) do
    for _, e in ipairs(redis.call('XRANGE', KEYS[1], id, id)) do entries[#entries + 1] = e end
  end
end
for _, e in ipairs(entries) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  redis.call('XADD', KEYS[2], '*', 't', f['t'], 'p', f['p'], 'd', f['d'])
  redis.call('XDEL', KEYS[1], e[1])
end
return #entries
"""

# KEYS: the group's streams. ARGV: group. Returns {pending, undelivered}; entries
# trimmed while pending are in neither (they are in the subscription's `lost`).
LAG = (
    _IDS
    + """
local pending, undelivered = 0, 0
for k = 1, #KEYS do
  local held = redis.call('XPENDING', KEYS[k], ARGV[1])[1]
  if held > 0 then
    -- Pending entries a cap trimmed away are counted as lost, not as backlog.
    local first = redis.call('XRANGE', KEYS[k], '-', '+', 'COUNT', 1)
    if #first == 0 then
      held = 0
    else
      held = held - #redis.call('XPENDING', KEYS[k], ARGV[1], '-', '(' .. first[1][1], held)
    end
  end
  pending = pending + held
  for _, g in ipairs(group_info(KEYS[k])) do
    if g['name'] == ARGV[1] then
      if g['lag'] then
        undelivered = undelivered + g['lag']
      else
        -- The lag is unknown after deletions inside the range: count instead.
        undelivered = undelivered + #redis.call('XRANGE', KEYS[k], '(' .. g['last-delivered-id'], '+')
      end
    end
  end
end
return {pending, undelivered}
"""
)

# KEYS: one stream. Removes the entries every group has acknowledged: below each
# group's oldest pending entry and at or below its last-delivered id.
TRIM_SAFE = (
    _IDS
    + """
local safe = nil
for _, g in ipairs(group_info(KEYS[1])) do
  local low
  if g['pending'] > 0 then
    low = parse(redis.call('XPENDING', KEYS[1], g['name'], '-', '+', 1)[1][1])
  else
    low = successor(g['last-delivered-id'])
  end
  if safe == nil or less(low, safe) then safe = low end
end
if safe == nil then
  -- No group reads this stream (subscriptions start at new events): nobody will.
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #top == 0 then return 0 end
  safe = successor(top[1][1])
end
return redis.call('XTRIM', KEYS[1], 'MINID', render(safe))
"""
)

# KEYS: the over-cap group's streams. ARGV: group, excess, key prefix of subscription hashes.
# Forces out the group's `excess` oldest unacknowledged entries (by id, across
# its streams) by trimming each stream up to the newest of them. The trim is
# per stream, so every group that had not acknowledged a removed entry loses
# it too; each group's loss is counted in its subscription's `lost`. Groups
# behind the trim point are moved past it; their pending entries stay pending
# and come back without data.
FORCE_OUT = (
    _IDS
    + """
local group, excess, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local candidates = {}
for k = 1, #KEYS do
  for _, p in ipairs(redis.call('XPENDING', KEYS[k], group, '-', '+', excess)) do
    if #redis.call('XRANGE', KEYS[k], p[1], p[1]) > 0 then candidates[#candidates + 1] = {k, parse(p[1])} end
  end
  for _, g in ipairs(group_info(KEYS[k])) do
    if g['name'] == group then
      for _, e in ipairs(redis.call('XRANGE', KEYS[k], '(' .. g['last-delivered-id'], '+', 'COUNT', excess)) do
        candidates[#candidates + 1] = {k, parse(e[1])}
      end
    end
  end
end
table.sort(candidates, function(a, b) return less(a[2], b[2]) end)
local upto = {}
for i = 1, math.min(excess, #candidates) do
  local k, id = candidates[i][1], candidates[i][2]
  if upto[k] == nil or less(upto[k], id) then upto[k] = id end
end
local lost = {}
for k, newest in pairs(upto) do
  local bound = '(' .. render({newest[1], newest[2] + 1})
  local below = redis.call('XRANGE', KEYS[k], '-', bound)
  for _, g in ipairs(group_info(KEYS[k])) do
    local last = parse(g['last-delivered-id'])
    local n = 0
    for _, e in ipairs(below) do
      local id = parse(e[1])
      if less(last, id) or #redis.call('XPENDING', KEYS[k], g['name'], e[1], e[1], 1) > 0 then n = n + 1 end
    end
    if less(last, newest) then redis.call('XGROUP', 'SETID', KEYS[k], g['name'], render(newest)) end
    if n > 0 then
      lost[g['name']] = (lost[g['name']] or 0) + n
      redis.call('HINCRBY', prefix .. g['name'], 'lost', n)
    end
  end
  redis.call('XTRIM', KEYS[k], 'MINID', render({newest[1], newest[2] + 1}))
end
local flat = {}
for name, n in pairs(lost) do
  flat[#flat + 1] = name
  flat[#flat + 1] = n
end
return flat
"""
)

# KEYS: subscription hash, subscription set, dead-letter stream, replay stream,
# then the subscription's type streams. ARGV: group. Returns 1, or 0 when the
# subscription does not exist. Its groups go with their pending entries and
# consumers; the replay and dead-letter streams are its own.
DELETE = """
if not redis.call('HGET', KEYS[1], 'types') then return 0 end
for k = 5, #KEYS do
  -- A type stream may have been removed by hand; nothing to destroy then.
  redis.pcall('XGROUP', 'DESTROY', KEYS[k], ARGV[1])
end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: the group's streams. ARGV: group, consumer. Deletes the consumer from
# each stream where it holds no pending entry (DELCONSUMER would drop them).
RELEASE = """
local removed = 0
for k = 1, #KEYS do
  local held = redis.pcall('XPENDING', KEYS[k], ARGV[1], '-', '+', 1, ARGV[2])
  if type(held) == 'table' and not held.err and #held == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[k], ARGV[1], ARGV[2])
    removed = removed + 1
  end
end
return removed
"""

# KEYS: the group's streams. ARGV: group, idle ms. Deletes consumers idle that
# long with nothing pending (a stream that ended holding nacked entries, since
# claimed by others). A live consumer deleted here is recreated by its next read.
SWEEP = """
local removed = 0
for k = 1, #KEYS do
  local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[k], ARGV[1])
  if type(consumers) == 'table' and not consumers.err then
    for _, c in ipairs(consumers) do
      local info = {}
      for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
      if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[k], ARGV[1], info['name'])
        removed = removed + 1
      end
    end
  end
end
return removed
"""
