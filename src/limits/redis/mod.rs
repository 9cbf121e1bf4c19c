//! Limits shared by a fleet of processes through Redis (feature `redis`):
//! `RedisStore`, the store behind [`RedisLimitsBuilder`].
//!
//! One concept per file, dependencies pointing one way (redis → limits, engine::observe):
//!
//! - `builder`: the settings, their defaults, and spawning the background tasks;
//! - `store`: the store and one origin's limits (the in-process ones wrapped);
//! - `link`: the connection, its bound, whether Redis answers, the prober, fallbacks;
//! - `pace`: a paced attempt's future;
//! - `learn`: adaptive pacing's rate, shared by the fleet;
//! - `cooldown`: the writer and the subscriber tasks;
//! - `replicas`: the heartbeat, counting the replicas alive for the fallback share;
//! - `scripts`: the Lua scripts; `names`: keys, channel, origins in them.

mod builder;
mod cooldown;
mod learn;
mod link;
mod names;
mod pace;
mod replicas;
mod scripts;
mod store;

pub use builder::{RedisLimitsBuilder, RedisLimitsError};
