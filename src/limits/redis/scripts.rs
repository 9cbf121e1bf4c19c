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
/// KEYS\[1\]: the pace key. ARGV: the interval, the burst tolerance (interval × burst), the
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

/// Gives back a reserved slot that will not be used (compare and set): if the stored time
/// is still the one the reservation stored, it moves back one interval.
///
/// KEYS\[1\]: the pace key. ARGV: the time the reservation stored and the interval, in µs.
/// Returns the time now stored (0 if none is left), or -1 when a later reservation
/// changed it (the slot stays taken).
const GIVE_BACK: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local stored = tonumber(redis.call('GET', KEYS[1]))
if stored == nil or stored ~= tonumber(ARGV[1]) then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
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
    pub(crate) give_back: Script,
    pub(crate) cooldown: Script,
    pub(crate) reread: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            pace: Script::new(PACE),
            give_back: Script::new(GIVE_BACK),
            cooldown: Script::new(COOLDOWN),
            reread: Script::new(REREAD),
        }
    }
}
