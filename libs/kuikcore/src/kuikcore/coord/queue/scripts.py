"""The job queue's Lua scripts: every step that must be atomic on the server, one script each.

Kept apart from the Python that calls them so the key and argument layout of each script sits
next to its text (the KEYS/ARGV comments are the contract with `producer` and `consumer`).
"""

from __future__ import annotations

__all__ = [
    "ACK_CHUNK",
    "ACK_MANY",
    "ENQUEUE",
    "ENQUEUE_CHUNK",
    "FAIL",
    "MOVE_DUE",
    "PRUNE",
    "PRUNE_LIMIT",
    "READ",
    "TOUCH",
]

# Enqueue a batch. KEYS: every lane's stream by rank, then one job key per job.
# ARGV: lane rank, pending ttl ms, backlog bound, group, then (token, envelope) per job.
# The job key holds `<rank>:<token>:<entry id>` (entry id empty while waiting for a retry).
# Returns one of queued / promoted / duplicate / full per job.
ENQUEUE = """
local lanes = #KEYS - (#ARGV - 4) / 2
local rank = tonumber(ARGV[1])
local target = KEYS[rank + 1]
local bound = tonumber(ARGV[3])
local out = {}
for j = 1, #KEYS - lanes do
  local key, token, envelope = KEYS[lanes + j], ARGV[3 + 2 * j], ARGV[4 + 2 * j]
  local cur = redis.call('GET', key)
  local result = nil
  if cur then
    local held, held_token, id = string.match(cur, '^(%d+):([^:]*):(.*)$')
    if held_token == token then
      result = 'queued'  -- this very call, retried after a lost reply
    elseif tonumber(held) <= rank then
      result = 'duplicate'
    elseif id ~= '' and KEYS[tonumber(held) + 1] then
      -- promotion: drop the lower-lane entry unless a worker already has it
      local older = KEYS[tonumber(held) + 1]
      if #redis.call('XPENDING', older, ARGV[4], id, id, 1) == 0 then redis.call('XDEL', older, id) end
    end
  end
  if not result then
    if bound > 0 and redis.call('XLEN', target) >= bound then
      result = 'full'
    else
      local id = redis.call('XADD', target, '*', 'e', envelope)
      redis.call('SET', key, rank .. ':' .. token .. ':' .. id, 'PX', ARGV[2])
      if cur then result = 'promoted' else result = 'queued' end
    end
  end
  out[j] = result
end
return out
"""
#: Most jobs enqueued by one script call (keeps each call short on the server).
ENQUEUE_CHUNK = 500

# Shared head of the settle scripts: only the consumer owning the entry may settle it.
# KEYS: stream, job key. ARGV: group, id, consumer, token.
_OWNED = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return -1 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local cur = redis.call('GET', KEYS[2])
local mine = cur and string.match(cur, '^%d+:([^:]*)') == ARGV[4]
"""

# Acks of many entries of one stream at once (concurrent handlers finishing together).
# KEYS: stream, then one job key per entry. ARGV: group, consumer, then (id, token) per entry.
# Returns 1 per entry acked, -1 per entry this consumer no longer owned.
ACK_MANY = """
local out = {}
for i = 2, #KEYS do
  local id, token = ARGV[2 * i - 1], ARGV[2 * i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p == 0 or p[1][2] ~= ARGV[2] then
    out[i - 1] = -1
  else
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    local cur = redis.call('GET', KEYS[i])
    if cur and string.match(cur, '^%d+:([^:]*)') == token then redis.call('DEL', KEYS[i]) end
    out[i - 1] = 1
  end
end
return out
"""
#: Most entries acked by one script call (keeps each call short on the server).
ACK_CHUNK = 256

# KEYS: stream, job key, delayed zset, dead stream.
# ARGV: group, id, consumer, token, envelope, delay ms (-1: dead-letter), pending ttl ms,
#       dead bound, lane rank, error.
FAIL = (
    _OWNED
    + """
if cur and not mine then return 2 end
local delay = tonumber(ARGV[6])
if delay >= 0 then
  local t = redis.call('TIME')
  local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + delay
  redis.call('ZADD', KEYS[3], due, ARGV[5])
  redis.call('SET', KEYS[2], ARGV[9] .. ':' .. ARGV[4] .. ':', 'PX', ARGV[7])
  return 1
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[5], 'error', ARGV[10])
if mine then redis.call('DEL', KEYS[2]) end
return 3
"""
)

# KEYS: (delayed zset, stream) per lane. ARGV: max entries to move per lane.
MOVE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moved = 0
for i = 1, #KEYS, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
  for _, member in ipairs(due) do
    redis.call('XADD', KEYS[i + 1], '*', 'e', member)
    redis.call('ZREM', KEYS[i], member)
  end
  moved = moved + #due
end
return moved
"""

# Strict lane priority in one round trip: read the first lane, then the next only for what is
# still missing. KEYS: lane streams by rank. ARGV: group, consumer, count.
# Returns {rank, id, envelope} triples (every entry has the single field `e`).
READ = """
local left = tonumber(ARGV[3])
local out = {}
for rank, stream in ipairs(KEYS) do
  if left <= 0 then break end
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', stream, '>')
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      local fields, envelope = entry[2], ''
      for f = 1, #fields, 2 do
        if fields[f] == 'e' then envelope = fields[f + 1] end
      end
      table.insert(out, {rank - 1, entry[1], envelope})
      left = left - 1
    end
  end
end
return out
"""

# KEYS: stream. ARGV: group, consumer, ids... Returns the ids this consumer no longer owns.
TOUCH = """
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""


# Delete dead consumers: idle at least ARGV[2] ms and owning no entry, never ARGV[4] (the caller),
# at most ARGV[3] per call. One script, so no consumer can read an entry between the check and
# the delete (DELCONSUMER would orphan it). KEYS: lane streams. ARGV: group, idle ms, limit, keep.
PRUNE = """
local left = tonumber(ARGV[3])
local deleted = 0
for _, stream in ipairs(KEYS) do
  for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', stream, ARGV[1])) do
    if left <= 0 then return deleted end
    local f = {}
    for i = 1, #consumer, 2 do f[consumer[i]] = consumer[i + 1] end
    if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) and f['name'] ~= ARGV[4] then
      redis.call('XGROUP', 'DELCONSUMER', stream, ARGV[1], f['name'])
      deleted = deleted + 1
      left = left - 1
    end
  end
end
return deleted
"""
#: Most dead consumers one worker deletes per visibility timeout (bounds the script's work).
PRUNE_LIMIT = 100
