//! Limits shared by a fleet of processes through Redis (feature `redis`):
//! `RedisStore`, the store behind [`RedisLimitsBuilder`].
//!
//! One concept per file, dependencies pointing one way (redis → limits, engine::observe):
//!
//! - `builder`: the settings, their defaults, and spawning the background tasks;
//! - `store`: the store and one origin's limits (the in-process ones wrapped);
//! - `conn`: the connection, to a standalone Redis or a cluster; where to subscribe;
//! - `link`: the calls on the connection, their bound, whether Redis answers, the prober,
//!   fallbacks;
//! - `calls`: the calls of adaptive pacing and of the heartbeat on the link;
//! - `remote`: what one origin's limits need of Redis, and what a replica knows of the
//!   fleet's learned rate;
//! - `pace`: a paced attempt's future;
//! - `learn`: adaptive pacing's rate, shared by the fleet;
//! - `cooldown`: the writer and the subscriber tasks;
//! - `replicas`: the heartbeat, counting the replicas alive for the fallback share;
//! - `scripts`: the Lua scripts; `names`: keys, channel, origins in them;
//! - `tls`: the redis crate's client for a URL, by TLS or not.

mod builder;
mod calls;
mod conn;
mod cooldown;
mod learn;
mod link;
mod names;
mod pace;
mod remote;
mod replicas;
mod scripts;
mod store;
mod tls;

pub use builder::{RedisLimitsBuilder, RedisLimitsError};
pub(crate) use conn::Target;
