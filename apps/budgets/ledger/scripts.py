"""The ledger's Lua: each function below is one atomic step in Redis.

A counter is a hash: `ld` (loaded from the Postgres ledger), `st`/`sc` (spent tokens and
micro-units of money), `rt`/`rc` (held by open reservations). A rate window is a hash: `used`,
`start` (ms), expiring with its span. A reservation is a hash: `state` (open | expired |
settled), `t`/`c` (its hold), `meta` (JSON: the counters and ids the reconciler needs); the
open-hold ZSET scores each open reservation by its deadline (ms).

Why Lua: checking room in every scope and holding in all of them (and counting the rate
windows) must be all-or-nothing across processes; a script runs alone in the single-threaded
server, so it is, in one round trip, with no lock held across the network.
"""

from __future__ import annotations

# Lua numbers are doubles: `-x` of a zero is "-0", which HINCRBY refuses; the scripts write
# `0 - x` instead.

# KEYS: counters c1..cn, rate windows w1..wm, reservation R, open ZSET Z.
# ARGV: now_ms, rid, deadline_ms, n, m, need_t, need_micros, meta_json, r_ttl_s,
#       then (cap_t, cap_micros, ttl_s, fresh) per counter (-1: no cap), then (limit, weight,
#       span_ms) per window.
# Returns {'ok', st, sc, rt, rc per counter (after the hold)} | {'dup'} | {'load', i}
#       | {'over', i, st, sc, rt, rc} | {'rate', j, retry_ms}.
# An empty rate window admits one call whatever its weight (a hold larger than the whole tpm
# limit would otherwise never run); a counter already over its cap (an overrun) refuses even
# a zero hold. A counter not loaded is loaded here as zero if it is `fresh` (a session or turn
# the caller knows has made no call: nothing in the ledger to sum), in the same step as the
# checks; any other is sent back to be loaded from the ledger.
_CHECKS = """
local now = tonumber(ARGV[1])
local n, m, nt, nc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local out = {'ok'}
for i = 1, n do
  local a = 10 + (i - 1) * 4
  local v = redis.call('HMGET', KEYS[i], 'ld', 'st', 'sc', 'rt', 'rc')
  if not v[1] then
    if ARGV[a + 3] ~= '1' then return {'load', i} end
    redis.call('HSET', KEYS[i], 'ld', 1, 'st', 0, 'sc', 0, 'rt', 0, 'rc', 0)
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[a + 2]))
    v = {'1', '0', '0', '0', '0'}
  end
  local ct, cc = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local st, sc = tonumber(v[2] or '0'), tonumber(v[3] or '0')
  local rt, rc = tonumber(v[4] or '0'), tonumber(v[5] or '0')
  if (ct >= 0 and st + rt + nt > ct) or (cc >= 0 and sc + rc + nc > cc) then
    return {'over', i, st, sc, rt, rc}
  end
  out[#out + 1] = st
  out[#out + 1] = sc
  out[#out + 1] = rt + nt
  out[#out + 1] = rc + nc
end
local b = 10 + n * 4
for j = 1, m do
  local v = redis.call('HMGET', KEYS[n + j], 'used', 'start')
  local used = tonumber(v[1] or '0')
  if used > 0 and used + tonumber(ARGV[b + 1]) > tonumber(ARGV[b]) then
    local start = tonumber(v[2] or ARGV[1])
    return {'rate', j, math.max(1, start + tonumber(ARGV[b + 2]) - now)}
  end
  b = b + 3
end
"""

RESERVE = (
    """
local n0, m0 = tonumber(ARGV[4]), tonumber(ARGV[5])
local R, Z = KEYS[n0 + m0 + 1], KEYS[n0 + m0 + 2]
if redis.call('EXISTS', R) == 1 then return {'dup'} end
"""
    + _CHECKS
    + """
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'rt', nt)
  redis.call('HINCRBY', KEYS[i], 'rc', nc)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[10 + (i - 1) * 4 + 2]))
end
b = 10 + n * 4
for j = 1, m do
  local w, span = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local key = KEYS[n + j]
  redis.call('HINCRBY', key, 'used', w)
  if redis.call('HSETNX', key, 'start', ARGV[1]) == 1 then redis.call('PEXPIRE', key, span) end
  b = b + 3
end
redis.call('HSET', R, 'state', 'open', 't', nt, 'c', nc, 'meta', ARGV[8])
redis.call('EXPIRE', R, tonumber(ARGV[9]))
redis.call('ZADD', Z, tonumber(ARGV[3]), ARGV[2])
return out
"""
)

# The same checks, holding nothing: admission at enqueue, a turn's state at its start.
# ARGV as RESERVE's (rid, deadline, meta and r_ttl unused).
PEEK = _CHECKS + "\nreturn out\n"

# Settling one reservation (a Lua function, so SETTLE and SETTLE_RESERVE share it): R, Z, rid,
# actual_t, actual_micros, its counters' keys, its tpm windows' keys.
# open → release the hold and add the actuals; expired (charged by the reconciler) → add
# actual - hold; settled → 'dup'; missing (Redis lost R) → add the actuals. Counters not
# loaded are skipped (their load sums the ledger row); holds clamp at 0. tpm windows still
# alive are corrected by actual - hold (unless the hold is unknown). Returns the state before
# and {st, sc, rt, rc per counter} (-1s for a counter not loaded).
_SETTLE_FN = """
local function settle(R, Z, rid, at, ac, counters, tpm)
  local h = redis.call('HMGET', R, 'state', 't', 'c')
  local state = h[1] or 'missing'
  if state == 'settled' then return 'dup', {} end
  local ht, hc = tonumber(h[2] or '0'), tonumber(h[3] or '0')
  local vals = {}
  for _, key in ipairs(counters) do
    if redis.call('HEXISTS', key, 'ld') == 1 then
      if state == 'open' then
        local rt = redis.call('HINCRBY', key, 'rt', 0 - ht)
        if rt < 0 then redis.call('HSET', key, 'rt', 0) end
        local rc = redis.call('HINCRBY', key, 'rc', 0 - hc)
        if rc < 0 then redis.call('HSET', key, 'rc', 0) end
        redis.call('HINCRBY', key, 'st', at)
        redis.call('HINCRBY', key, 'sc', ac)
      elseif state == 'expired' then
        redis.call('HINCRBY', key, 'st', at - ht)
        redis.call('HINCRBY', key, 'sc', ac - hc)
      else
        redis.call('HINCRBY', key, 'st', at)
        redis.call('HINCRBY', key, 'sc', ac)
      end
      local v = redis.call('HMGET', key, 'st', 'sc', 'rt', 'rc')
      vals[#vals + 1] = tonumber(v[1]); vals[#vals + 1] = tonumber(v[2])
      vals[#vals + 1] = tonumber(v[3]); vals[#vals + 1] = tonumber(v[4])
    else
      vals[#vals + 1] = -1; vals[#vals + 1] = -1; vals[#vals + 1] = -1; vals[#vals + 1] = -1
    end
  end
  if state ~= 'missing' then
    for _, key in ipairs(tpm) do
      if redis.call('EXISTS', key) == 1 and at ~= ht then
        local used = redis.call('HINCRBY', key, 'used', at - ht)
        if used < 0 then redis.call('HSET', key, 'used', 0) end
      end
    end
  end
  redis.call('HSET', R, 'state', 'settled')
  redis.call('EXPIRE', R, 3600)
  redis.call('ZREM', Z, rid)
  return state, vals
end
"""

# KEYS: R, Z, counters c1..cn, tpm windows w1..wm. ARGV: rid, actual_t, actual_micros, n, m.
# Returns {state before, then st, sc, rt, rc per counter} | {'dup'}.
SETTLE = (
    _SETTLE_FN
    + """
local n, m = tonumber(ARGV[4]), tonumber(ARGV[5])
local counters, tpm = {}, {}
for i = 1, n do counters[i] = KEYS[2 + i] end
for j = 1, m do tpm[j] = KEYS[2 + n + j] end
local state, vals = settle(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  counters, tpm)
if state == 'dup' then return {'dup'} end
local out = {state}
for _, x in ipairs(vals) do out[#out + 1] = x end
return out
"""
)

# A turn's previous call settled and its next call reserved, in one step: SETTLE for a
# reservation held in the same counters, then RESERVE. The settle stands whatever the reserve
# answers (it is idempotent: a retried reserve finds it settled and goes on).
# KEYS: RESERVE's, then the settled reservation's R. ARGV: RESERVE's, then prev_rid, actual_t,
# actual_micros, k, and the k indices (1-based) of the tpm windows among the rate windows.
# Returns RESERVE's reply.
SETTLE_RESERVE = (
    _SETTLE_FN
    + """
local sn, sm = tonumber(ARGV[4]), tonumber(ARGV[5])
local p = 10 + sn * 4 + sm * 3
local scounters, stpm = {}, {}
for i = 1, sn do scounters[i] = KEYS[i] end
for q = 1, tonumber(ARGV[p + 3]) do stpm[q] = KEYS[sn + tonumber(ARGV[p + 3 + q])] end
settle(KEYS[sn + sm + 3], KEYS[sn + sm + 2], ARGV[p], tonumber(ARGV[p + 1]),
  tonumber(ARGV[p + 2]), scounters, stpm)
"""
    + RESERVE
)

# The reconciler, for a reservation past its deadline. KEYS: R, Z, counters. ARGV: rid, n.
# If still open: the hold is charged (moved from rt/rc to st/sc on loaded counters) and the
# reservation marked expired. Always leaves the open-hold ZSET. Returns 1 if it charged.
EXPIRE = """
local R, Z = KEYS[1], KEYS[2]
local n = tonumber(ARGV[2])
local h = redis.call('HMGET', R, 'state', 't', 'c')
redis.call('ZREM', Z, ARGV[1])
if h[1] ~= 'open' then return 0 end
local ht, hc = tonumber(h[2]), tonumber(h[3])
for i = 1, n do
  local key = KEYS[2 + i]
  if redis.call('HEXISTS', key, 'ld') == 1 then
    local rt = redis.call('HINCRBY', key, 'rt', 0 - ht)
    if rt < 0 then redis.call('HSET', key, 'rt', 0) end
    local rc = redis.call('HINCRBY', key, 'rc', 0 - hc)
    if rc < 0 then redis.call('HSET', key, 'rc', 0) end
    redis.call('HINCRBY', key, 'st', ht)
    redis.call('HINCRBY', key, 'sc', hc)
  end
end
redis.call('HSET', R, 'state', 'expired')
return 1
"""

# KEYS: a counter. ARGV: spent_t, spent_micros (the ledger's sums), ttl_s. Loads it unless
# another process did first (then the sums it read are no newer than what is there).
LOAD = """
if redis.call('HSETNX', KEYS[1], 'ld', 1) == 1 then
  redis.call('HSET', KEYS[1], 'st', ARGV[1], 'sc', ARGV[2])
  redis.call('HSETNX', KEYS[1], 'rt', 0)
  redis.call('HSETNX', KEYS[1], 'rc', 0)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""
