"""The store's Lua scripts. Each runs atomically in Redis, so a status change, its history entry, its
index updates and its event are one step: no reader ever sees half of it.

Index key layout (built here from stored fields, see ``sendq/keys.py``): ``sendq:idx:{sub}:status:{s}``,
``...:channel:{c}``, ``...:batch:{b}``, ``...:file:{f}``.
"""

from typing import Final

#: New messages, up to ``store.BULK_IDS_PER_CALL`` per call (one for a single message). Each one is created
#: whole or not at all; the index entries of the whole call are gathered into one variadic ZADD per key.
#: KEYS: due, events, retention
#: ARGV: per message, one after the other: id, reference key or '' (none), created_ms, due_ms or '' (not
#:       waiting on the clock), history_json or '' for the plain birth entry (TRANSITION writes it at the first
#:       change: see ``sendq.store.BIRTH_REASON``), status, retention score or '' (not final), batch key or '',
#:       n, n index keys, m, m field/value pairs
#: Returns, flat, per message in order: created (1/0), id (the existing message's when the reference or id is
#: taken). A reference taken earlier in the same call counts as taken.
CREATE_MANY: Final = """
local out = {}
-- gathered index entries: key -> {score, id, ...}; batch key -> status -> new messages
local entries, counts = {}, {}
local function index(key, score, id)
  local e = entries[key]
  if not e then e = {}; entries[key] = e end
  e[#e + 1] = score
  e[#e + 1] = id
end
local i = 1
while i <= #ARGV do
  local id, ref, created, due, hist, status, retain, batch =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local first_index = i + 9
  local pairs_at = first_index + tonumber(ARGV[i + 8])
  local last = pairs_at + 2 * tonumber(ARGV[pairs_at])
  local mk = 'sendq:msg:' .. id
  local existing = false
  if ref ~= '' then existing = redis.call('GET', ref) end
  if existing then
    out[#out + 1] = 0; out[#out + 1] = existing
  elseif redis.call('EXISTS', mk) == 1 then
    out[#out + 1] = 0; out[#out + 1] = id
  else
    redis.call('HSET', mk, unpack(ARGV, pairs_at + 1, last))
    if hist ~= '' then redis.call('RPUSH', mk .. ':history', hist) end
    if ref ~= '' then redis.call('SET', ref, id) end
    if due ~= '' then index(KEYS[1], due, id) end
    if retain ~= '' then index(KEYS[3], retain, id) end
    for k = first_index, pairs_at - 1 do index(ARGV[k], created, id) end
    if batch ~= '' then
      local c = counts[batch] or {}
      counts[batch] = c
      c[status] = (c[status] or 0) + 1
    end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'id', id, 'from', '', 'to', status, 'at', created,
               'attempt', 0)
    out[#out + 1] = 1; out[#out + 1] = id
  end
  i = last + 1
end
for key, e in pairs(entries) do redis.call('ZADD', key, unpack(e)) end
for batch, c in pairs(counts) do
  for status, n in pairs(c) do redis.call('HINCRBY', batch, 'n:' .. status, n) end
end
return out
"""

#: A Lua function both status-change scripts start with: append ``entry`` to a message's history list. A message
#: born plain has no list until its first change (``store.BIRTH_REASON``, "created"): its implied birth entry, in
#: its birth ``status`` at its ``created_ms``, is written first.
_APPEND_HISTORY: Final = """
local function append_history(key, status, created_ms, entry)
  if redis.call('EXISTS', key) == 0 then
    redis.call('RPUSH', key,
               '{"status":"' .. status .. '","at":' .. created_ms .. ',"reason":"created","attempt":0,"detail":null}',
               entry)
  else
    redis.call('RPUSH', key, entry)
  end
end
"""

#: KEYS: msg, history, due, inflight, retention, events, awaiting[, provider message link]
#: ARGV: 1 id, 2 allowed from-statuses (space separated), 3 to, 4 expected job_version or '',
#:       5 bump version '1'/'0', 6 now_ms, 7 history entry JSON without its closing attempt value and brace,
#:       8 count an attempt '1'/'0', 9 due score or '', 10 lease score or '', 11 retention score or '',
#:       12 only if the lease ran out by this ms or '', 13 return the record '1'/'0',
#:       14 receipt deadline score, 'keep' (stay in the awaiting index) or '' (leave it), 15.. field/value pairs
#: The optional 8th key is set to the message id: receipts find the message by the provider's id through it.
#: Returns {ok: 1 done, 0 refused, -1 no such message; status now; job_version; attempts[; HGETALL record]}.
TRANSITION: Final = (
    _APPEND_HISTORY
    + """
-- One read for every field this script needs (the worker runs it three times per message).
local f = redis.call('HMGET', KEYS[1], 'status', 'job_version', 'attempts', 'subaccount', 'created_at', 'batch_id')
local cur = f[1]
if not cur then return {-1, '', 0, 0} end
-- absent fields hold their defaults (a new record is written without them: see store._record_pairs)
local ver = tonumber(f[2] or '1')
local attempts = tonumber(f[3] or '0')
local allowed = false
for s in string.gmatch(ARGV[2], '%S+') do
  if s == cur then allowed = true break end
end
if not allowed then return {0, cur, ver, attempts} end
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= ver then return {0, cur, ver, attempts} end
if ARGV[12] ~= '' then
  local lease = redis.call('ZSCORE', KEYS[4], ARGV[1])
  if lease and tonumber(lease) > tonumber(ARGV[12]) then return {0, cur, ver, attempts} end
end
if ARGV[5] == '1' then ver = ver + 1 end
if ARGV[8] == '1' then attempts = attempts + 1 end
local to = ARGV[3]
local sets = {'status', to, 'status_at', ARGV[6], 'job_version', ver, 'attempts', attempts}
for i = 15, #ARGV do sets[#sets + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(sets))
append_history(KEYS[2], cur, f[5], ARGV[7] .. attempts .. '}')
if cur ~= to then
  local p = 'sendq:idx:' .. f[4] .. ':status:'
  redis.call('ZREM', p .. cur, ARGV[1])
  redis.call('ZADD', p .. to, f[5], ARGV[1])
  if f[6] and f[6] ~= '' then
    -- per-batch counters for the batch preview: messages per status, first and last sent time
    local bk = 'sendq:batch:' .. f[4] .. ':' .. f[6]
    redis.call('HINCRBY', bk, 'n:' .. cur, -1)
    redis.call('HINCRBY', bk, 'n:' .. to, 1)
    if to == 'sent' then
      redis.call('HSETNX', bk, 'first_sent_ms', ARGV[6])
      redis.call('HSET', bk, 'last_sent_ms', ARGV[6])
    end
  end
end
-- Only a waiting message can be in the due index, and only a leased one in the lease index: skip the ZREMs
-- that cannot remove anything (every change of the worker's hot path and of a bulk cancel skips one).
if ARGV[9] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[9], ARGV[1])
elseif cur == 'programmed' or cur == 'blocked_time' then
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if ARGV[10] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[10], ARGV[1])
elseif cur == 'processing' or cur == 'sending' then
  redis.call('ZREM', KEYS[4], ARGV[1])
end
if ARGV[11] ~= '' then redis.call('ZADD', KEYS[5], ARGV[11], ARGV[1]) end
if ARGV[14] == '' then
  if cur == 'sent' or cur == 'delivered' then redis.call('ZREM', KEYS[7], ARGV[1]) end
elseif ARGV[14] ~= 'keep' then
  redis.call('ZADD', KEYS[7], ARGV[14], ARGV[1])
end
if KEYS[8] then redis.call('SET', KEYS[8], ARGV[1]) end
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 100000, '*', 'id', ARGV[1], 'from', cur, 'to', to, 'at', ARGV[6],
           'attempt', attempts)
if ARGV[13] == '1' then return {1, to, ver, attempts, redis.call('HGETALL', KEYS[1])} end
return {1, to, ver, attempts}
"""
)

#: The same change for many messages at once, for bulk operations (cancelling a batch): per message what
#: TRANSITION does, with the index moves of the whole call gathered into one variadic command per key, and one
#: script call for many messages (a batch cancel's Redis time was mostly per-call and per-command overhead).
#: Only for changes that need no due time, lease, expected version, receipt deadline or provider link.
#: KEYS: due, inflight, retention, events, awaiting
#: ARGV: 1 allowed from-statuses (space separated), 2 to, 3 bump version '1'/'0', 4 now_ms, 5 history entry JSON
#:       without its closing attempt value and brace, 6 count an attempt '1'/'0', 7 retention score or '',
#:       8 'keep' (stay in the awaiting index) or '' (leave it), 9 n (number of field/value pairs),
#:       10..9+2n field/value pairs, then the message ids (at most ``store.BULK_IDS_PER_CALL``)
#: Returns, flat, per id in order: ok (1 done, 0 refused, -1 no such message), status now, job_version, attempts.
TRANSITION_MANY: Final = (
    _APPEND_HISTORY
    + """
local allowed = {}
for s in string.gmatch(ARGV[1], '%S+') do allowed[s] = true end
local to, now = ARGV[2], ARGV[4]
local first_id = 10 + 2 * tonumber(ARGV[9])
local extra = {}
for i = 10, first_id - 1 do extra[#extra + 1] = ARGV[i] end
local out = {}
-- gathered index moves: status index key -> ids leaving it / {score, id, ...} entering it; batch key -> deltas
local leave, enter, counts = {}, {}, {}
local left_due, left_lease, left_awaiting, retained = {}, {}, {}, {}
for i = first_id, #ARGV do
  local id = ARGV[i]
  local mk = 'sendq:msg:' .. id
  local f = redis.call('HMGET', mk, 'status', 'job_version', 'attempts', 'subaccount', 'created_at', 'batch_id')
  local cur = f[1]
  local ver = tonumber(f[2] or '1')
  local attempts = tonumber(f[3] or '0')
  if not cur then
    out[#out + 1] = -1; out[#out + 1] = ''; out[#out + 1] = 0; out[#out + 1] = 0
  elseif not allowed[cur] then
    out[#out + 1] = 0; out[#out + 1] = cur; out[#out + 1] = ver; out[#out + 1] = attempts
  else
    -- absent fields hold their defaults: write only what changes
    local sets = {'status', to, 'status_at', now}
    if ARGV[3] == '1' then ver = ver + 1; sets[#sets + 1] = 'job_version'; sets[#sets + 1] = ver end
    if ARGV[6] == '1' then attempts = attempts + 1; sets[#sets + 1] = 'attempts'; sets[#sets + 1] = attempts end
    for _, v in ipairs(extra) do sets[#sets + 1] = v end
    redis.call('HSET', mk, unpack(sets))
    append_history(mk .. ':history', cur, f[5], ARGV[5] .. attempts .. '}')
    if cur ~= to then
      local p = 'sendq:idx:' .. f[4] .. ':status:'
      local lk, ek = p .. cur, p .. to
      leave[lk] = leave[lk] or {}
      table.insert(leave[lk], id)
      enter[ek] = enter[ek] or {}
      table.insert(enter[ek], f[5])
      table.insert(enter[ek], id)
      if f[6] and f[6] ~= '' then
        local bk = 'sendq:batch:' .. f[4] .. ':' .. f[6]
        local c = counts[bk] or {}
        counts[bk] = c
        c[cur] = (c[cur] or 0) - 1
        c[to] = (c[to] or 0) + 1
        if to == 'sent' then
          redis.call('HSETNX', bk, 'first_sent_ms', now)
          redis.call('HSET', bk, 'last_sent_ms', now)
        end
      end
    end
    if cur == 'programmed' or cur == 'blocked_time' then table.insert(left_due, id) end
    if cur == 'processing' or cur == 'sending' then table.insert(left_lease, id) end
    if ARGV[7] ~= '' then table.insert(retained, ARGV[7]); table.insert(retained, id) end
    if ARGV[8] == '' and (cur == 'sent' or cur == 'delivered') then table.insert(left_awaiting, id) end
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', 100000, '*', 'id', id, 'from', cur, 'to', to, 'at', now,
               'attempt', attempts)
    out[#out + 1] = 1; out[#out + 1] = to; out[#out + 1] = ver; out[#out + 1] = attempts
  end
end
for k, ids in pairs(leave) do redis.call('ZREM', k, unpack(ids)) end
for k, entries in pairs(enter) do redis.call('ZADD', k, unpack(entries)) end
for bk, c in pairs(counts) do
  for status, delta in pairs(c) do
    if delta ~= 0 then redis.call('HINCRBY', bk, 'n:' .. status, delta) end
  end
end
if #left_due > 0 then redis.call('ZREM', KEYS[1], unpack(left_due)) end
if #left_lease > 0 then redis.call('ZREM', KEYS[2], unpack(left_lease)) end
if #retained > 0 then redis.call('ZADD', KEYS[3], unpack(retained)) end
if #left_awaiting > 0 then redis.call('ZREM', KEYS[5], unpack(left_awaiting)) end
return out
"""
)

#: KEYS: retention. ARGV: now_ms, limit. Deletes final messages past retention with their index entries, their
#: provider-message link and their receipt deadline.
PURGE: Final = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local mk = 'sendq:msg:' .. id
  local f = redis.call('HMGET', mk, 'subaccount', 'status', 'channel', 'batch_id', 'file_name', 'reference_id',
                      'provider', 'provider_message_id')
  if f[1] then
    local p = 'sendq:idx:' .. f[1] .. ':'
    redis.call('ZREM', p .. 'status:' .. f[2], id)
    redis.call('ZREM', p .. 'channel:' .. f[3], id)
    if f[4] and f[4] ~= '' then
      redis.call('ZREM', p .. 'batch:' .. f[4], id)
      redis.call('HINCRBY', 'sendq:batch:' .. f[1] .. ':' .. f[4], 'n:' .. f[2], -1)
    end
    if f[5] and f[5] ~= '' then redis.call('ZREM', p .. 'file:' .. f[5], id) end
    if f[6] and f[6] ~= '' then
      local rk = 'sendq:ref:' .. f[1] .. ':' .. f[6]
      if redis.call('GET', rk) == id then redis.call('DEL', rk) end
    end
    if f[7] and f[7] ~= '' and f[8] and f[8] ~= '' then
      local lk = 'sendq:pmid:' .. f[7] .. ':' .. f[8]
      if redis.call('GET', lk) == id then redis.call('DEL', lk) end
    end
  end
  redis.call('DEL', mk, mk .. ':history')
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', 'sendq:awaiting', id)
end
return #ids
"""
