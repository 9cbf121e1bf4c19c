//! The Lua scripts a `RedisStore` runs, each one round trip. The
//! redis crate's `Script` sends `EVALSHA` and, on `NOSCRIPT` (a restarted Redis, a
//! `SCRIPT FLUSH`), loads the script and runs it again.
//!
//! The scripts read Redis' `TIME`, so replicas' clocks never matter. Redis 7 replicates
//! scripts by their effects, which allows it; on Redis 5 and 6 the scripts ask for that
//! first (`redis.replicate_commands`).
//!
//! The cooldown scripts touch keys derived from the declared ones (`{p:s}:cooldown:<origin>`
//! from `{p:s}:`): they share the declared keys' hash tag, so they are in the same Redis
//! Cluster slot.

use redis::Script;

/// GCRA with reservation, timed by Redis.
///
/// KEYS\[1\]: the pace key. ARGV: the interval, the burst tolerance (interval × burst) and
/// the longest wait the attempt accepts, all in µs. Returns `{wait_us, reserved}`: with
/// `tat = max(stored, now)`, `new_tat = tat + interval`, `wait = max(0, new_tat - tolerance
/// - now)`; a wait above the longest accepted reserves nothing (`reserved` 0), else
/// `new_tat` is stored (expiring when it has passed) and `reserved` is 1.
const PACE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {math.floor(wait), 0} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {math.floor(wait), 1}
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
/// KEYS\[1\]: the index. ARGV\[1\]: the scope's key base `{p:s}:`.
const REREAD: &str = r"
local out = {}
for _, o in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local c = redis.call('PTTL', ARGV[1] .. 'cooldown:' .. o)
  local r = redis.call('PTTL', ARGV[1] .. 'refusal:' .. o)
  if c < 0 and r < 0 then
    redis.call('SREM', KEYS[1], o)
  else
    table.insert(out, {o, c, r})
  end
end
return out
";

/// The three scripts, hashed once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) pace: Script,
    pub(crate) cooldown: Script,
    pub(crate) reread: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            pace: Script::new(PACE),
            cooldown: Script::new(COOLDOWN),
            reread: Script::new(REREAD),
        }
    }
}
