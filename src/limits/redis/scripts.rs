//! The Lua scripts a `RedisStore` runs, each one round trip. The
//! redis crate's `Script` sends `EVALSHA` and, on `NOSCRIPT` (a restarted Redis, a
//! `SCRIPT FLUSH`), loads the script and runs it again.
//!
//! The scripts read Redis' `TIME`, so replicas' clocks never matter. Redis 7 replicates
//! scripts by their effects, which allows it; on Redis 5 and 6 the scripts ask for that
//! first (`redis.replicate_commands`).
//!
//! Every key a script touches is declared in its KEYS, and all share the scope's hash tag:
//! they are in one Redis Cluster slot.

use redis::Script;

/// GCRA with reservation, timed by Redis.
///
/// KEYS\[1\]: the pace key; KEYS\[2\]: its freed slots (see `GIVE_BACK`): the earliest
/// one not past and within the longest wait is taken first, as `{wait_us, 1, slot +
/// tolerance}`. ARGV: the interval, the burst tolerance (interval × burst), the
/// longest wait the attempt accepts, all in µs, and a floor (µs of Redis time, 0 for none:
/// the latest time this process stored, in case Redis lost it). Returns `{wait_us,
/// reserved, new_tat}`: with `tat = max(stored, now, floor)`, `new_tat = tat + interval`,
/// `wait = max(0, new_tat - tolerance - now)`; a wait above the longest accepted reserves
/// nothing (`reserved` 0), else `new_tat` is stored (expiring when it has passed) and
/// `reserved` is 1.
const PACE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local floor = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
local freed = redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf', 'LIMIT', 0, 1)[1]
if freed and tonumber(freed) - now <= max_wait then
  redis.call('ZREM', KEYS[2], freed)
  return {tonumber(freed) - now, 1, tonumber(freed) + tolerance}
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
if floor > tat then tat = floor end
local new_tat = tat + interval
local wait = new_tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {math.floor(wait), 0, 0} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {math.floor(wait), 1, new_tat}
";

/// GCRA with reservation at the fleet's learned rate (`Pacing::adaptive`), timed by
/// Redis.
///
/// KEYS\[1\]: the pace key; KEYS\[2\]: the rate key, a hash: `r` the rate (per second),
/// `wmax` the rate before the last cut, `from` when its regrowth started, `cut` when the
/// last cut was (µs of Redis time), and the fleet's paced sends counted per second (`n`
/// in the second from `nw`, `prev` the rate of the one before); KEYS\[3\]: the freed
/// slots, taken first as in `PACE` (within the horizon too, as `{wait_us, 1, slot +
/// interval, rate, interval_us}`). ARGV: the longest wait
/// accepted and the floor (as `PACE`), then CUBIC's β and C, the highest rate, the growth
/// bound (a multiple of the measured send rate) and the horizon (µs): no slot further
/// ahead is reserved (status 3: ask again later), so that attempts waiting for a rate
/// that rises owe no slots taken at the old one.
///
/// No rate stored: the fleet does not pace (yet): returns `{0, 2, 0, "0", 0}`. Else the
/// rate regrows along `C (t − K)³ + wmax` (t since `from`), never past the bound times the
/// fleet's send rate (after a first cut, `ss` = 1: up to that bound, slow start), and is
/// stored if higher; then one slot at one interval of it, as
/// `PACE` with a burst of one. Returns `{wait_us, reserved, new_tat, rate, interval_us}`.
/// The rate key expires ten minutes after its last use: an origin left alone is learned
/// again.
const LEARNED_PACE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[2], 'r', 'wmax', 'from', 'n', 'nw', 'prev', 'ss')
local r = tonumber(h[1])
if r == nil or r <= 0 then return {0, 2, 0, '0', 0} end
local max_wait, floor = tonumber(ARGV[1]), tonumber(ARGV[2])
local beta, scale = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_rate, bound = tonumber(ARGV[5]), tonumber(ARGV[6])
local wmax, from = tonumber(h[2]) or r, tonumber(h[3]) or now
local n, nw, prev = tonumber(h[4]) or 0, tonumber(h[5]) or now, tonumber(h[6]) or 0
if now - nw >= 1000000 then
  if now - nw < 2000000 then prev = n * 1000000 / (now - nw) else prev = 0 end
  n, nw = 0, now
end
local elapsed = (now - from) / 1000000
if elapsed > 0 then
  local k = (wmax * (1 - beta) / scale) ^ (1 / 3)
  local x = elapsed - k
  local target = bound * math.max(prev, n + 1)
  if h[7] ~= '1' then target = math.min(scale * x * x * x + wmax, target) end
  target = math.min(target, max_rate)
  if target > r then r = target end
end
local interval = math.floor(1000000 / r + 0.5)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. now)
local freed = redis.call('ZRANGEBYSCORE', KEYS[3], now, '+inf', 'LIMIT', 0, 1)[1]
if freed and tonumber(freed) - now <= math.min(max_wait, tonumber(ARGV[7])) then
  redis.call('ZREM', KEYS[3], freed)
  return {tonumber(freed) - now, 1, tonumber(freed) + interval, string.format('%.6f', r), interval}
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
if floor > tat then tat = floor end
local wait = tat - now
local rate = string.format('%.6f', r)
if wait > max_wait or wait > tonumber(ARGV[7]) then
  redis.call('HSET', KEYS[2], 'r', rate, 'n', n, 'nw', nw, 'prev', prev)
  local status = 0
  if wait <= max_wait then status = 3 end
  return {math.floor(wait), status, 0, rate, interval}
end
local new_tat = tat + interval
redis.call('HSET', KEYS[2], 'r', rate, 'n', n + 1, 'nw', nw, 'prev', prev)
redis.call('PEXPIRE', KEYS[2], 600000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {math.floor(wait), 1, new_tat, rate, interval}
";

/// Cuts the fleet's learned rate for a 429, once per congestion event.
///
/// KEYS\[1\]: the rate key (see `LEARNED_PACE`); KEYS\[2\]: the set of origins the fleet
/// paces at a learned rate (read by a replica that subscribes). ARGV: how long ago the
/// throttled request was sent (µs), the send rate the caller measured for the fleet (per
/// second, used when no rate is stored yet), β, the lowest and the highest rate, the
/// channel and the message announcing that the fleet paces the origin, the origin, and the
/// 429's `Retry-After` in µs (regrowth starts after it).
///
/// A request sent before the last cut belongs to the event already answered: returns
/// `{0, rate}`. Else the rate becomes β × (the lower of the rate and the fleet's measured
/// send rate), and returns `{1, new rate}`; when no rate was stored, slow start is set and
/// the message is published.
const CUT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local sent = now - tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'r', 'cut', 'n', 'nw', 'prev')
local r, cut = tonumber(h[1]), tonumber(h[2])
if cut ~= nil and sent < cut then return {0, h[1] or '0'} end
local beta, min_rate, max_rate = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local before = tonumber(ARGV[2])
if r ~= nil then
  before = r
  local n, nw, prev = tonumber(h[3]) or 0, tonumber(h[4]) or now, tonumber(h[5]) or 0
  local span = now - nw
  if span >= 2000000 then prev = 0 end
  -- the send rate of the second under way, once it is a quarter through, if higher
  if span >= 250000 then prev = math.max(prev, n * 1000000 / span) end
  if prev > 0 and prev < before then before = prev end
end
before = math.max(min_rate, math.min(before, max_rate))
local rate = string.format('%.6f', math.max(min_rate, before * beta))
local ss = 0
if r == nil then ss = 1 end
local from = now + tonumber(ARGV[9])
redis.call('HSET', KEYS[1], 'r', rate, 'wmax', string.format('%.6f', before), 'from', from, 'cut', now, 'ss', ss)
redis.call('PEXPIRE', KEYS[1], 600000)
redis.call('SADD', KEYS[2], ARGV[8])
redis.call('PEXPIRE', KEYS[2], 600000)
if r == nil then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
return {1, rate}
";

/// Sets the fleet's learned rate, from a quota the server sent or written back into a
/// Redis that lost it (its regrowth starts over from it, towards `wmax`). KEYS\[1\]: the
/// rate key; KEYS\[2\]: the set of origins paced at a learned rate. ARGV: the rate, the
/// channel and the message announcing that the fleet paces the origin (published when no
/// rate was stored), the origin, and `wmax`. A rate below `wmax` (written back) counts as a
/// cut: a 429 to a request sent before it belongs to the same congestion event.
const SET_RATE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local was = redis.call('HGET', KEYS[1], 'r')
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'wmax', ARGV[5], 'from', now, 'ss', 0)
if tonumber(ARGV[5]) > tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'cut', now) end
redis.call('PEXPIRE', KEYS[1], 600000)
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[2], 600000)
if not was then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 1
";

/// Counts this replica alive for the next `ttl` and returns how many replicas of the scope
/// are alive (each counted until its last heartbeat's `ttl` ends, by Redis' clock).
///
/// KEYS\[1\]: the scope's sorted set of replicas (score: when each expires, ms). ARGV: this
/// replica's id and the ttl in ms.
const HEARTBEAT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
";

/// Gives back a reserved slot that will not be used. If the stored time is still the one
/// the reservation stored, it moves back one interval (compare and set). Else a later
/// reservation was made since: the slot (the stored time less its lead) is kept in the
/// freed set, for the next reservation to take, until it has passed.
///
/// KEYS\[1\]: the pace key; KEYS\[2\]: its freed slots. ARGV: the time the reservation
/// stored, the interval and the lead (how far the stored time lies past the slot), in
/// µs. Returns the time now stored (0 if none is left), or -1 when the slot went to the
/// freed set (or had passed).
const GIVE_BACK: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = tonumber(redis.call('GET', KEYS[1]))
if stored == nil or stored ~= tonumber(ARGV[1]) then
  local slot = tonumber(ARGV[1]) - tonumber(ARGV[3])
  if slot <= now then return -1 end
  redis.call('ZADD', KEYS[2], slot, string.format('%.0f', slot))
  local ms = math.ceil((slot - now) / 1000) + 1
  if redis.call('PTTL', KEYS[2]) < ms then redis.call('PEXPIRE', KEYS[2], ms) end
  return -1
end
local back = stored - tonumber(ARGV[2])
if back <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', back), 'PX', math.ceil((back - now) / 1000) + 1)
return back
";

/// Records a cooldown (or refusal) and announces it, unless a later one is recorded.
///
/// KEYS\[1\]: the cooldown key; KEYS\[2\]: the scope's index of origins. ARGV: the
/// remaining time in ms, the channel, the message, the origin. Returns 1 if recorded and
/// published, 0 if a later deadline was there already.
const COOLDOWN: &str = r"
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) >= ms then return 0 end
redis.call('SET', KEYS[1], '1', 'PX', ms)
redis.call('SADD', KEYS[2], ARGV[4])
if redis.call('PTTL', KEYS[2]) < ms then redis.call('PEXPIRE', KEYS[2], ms) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// Every cooldown and refusal of the scope still running, as `{origin, cooldown_ms,
/// refusal_ms}` (a negative time: none), forgetting origins with neither.
///
/// KEYS\[1\]: the index; then, for each origin, its cooldown key and its refusal key.
/// ARGV: the origins, in the same order (read from the index first: every key a script
/// touches is declared, as Redis Cluster requires).
const REREAD: &str = r"
local out = {}
for i, o in ipairs(ARGV) do
  local c = redis.call('PTTL', KEYS[2 * i])
  local r = redis.call('PTTL', KEYS[2 * i + 1])
  if c < 0 and r < 0 then
    redis.call('SREM', KEYS[1], o)
  else
    table.insert(out, {o, c, r})
  end
end
return out
";

/// The scripts, hashed once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) pace: Script,
    pub(crate) learned_pace: Script,
    pub(crate) cut: Script,
    pub(crate) set_rate: Script,
    pub(crate) give_back: Script,
    pub(crate) heartbeat: Script,
    pub(crate) cooldown: Script,
    pub(crate) reread: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            pace: Script::new(PACE),
            learned_pace: Script::new(LEARNED_PACE),
            cut: Script::new(CUT),
            set_rate: Script::new(SET_RATE),
            give_back: Script::new(GIVE_BACK),
            heartbeat: Script::new(HEARTBEAT),
            cooldown: Script::new(COOLDOWN),
            reread: Script::new(REREAD),
        }
    }
}
