//! The integration tests, linked into one binary (each file a module) so that CI links once
//! rather than once per file. `tests/replay_memory.rs` stays apart: it installs a counting
//! global allocator.

mod support;

mod adaptive_pacing;
mod cancellation;
mod code_rules;
mod compositions;
mod defaults;
mod fault_harness;
mod fleet_adaptive;
mod fleet_auth;
mod fleet_cluster;
mod fleet_edges;
mod fleet_faults;
mod fleet_redis;
mod fleet_scenarios;
mod fleet_share;
mod fleet_tls;
mod fleet_waiting;
mod hostile_servers;
mod http2;
mod load_protection;
mod observe_metrics;
mod observe_spans;
mod observe_support;
mod overrides;
mod properties;
mod readable_errors;
mod redaction;
mod redis_servers;
mod replay_body;
mod reqwest_middleware;
mod tower_layer;
mod transport_errors;
mod typed_errors;
