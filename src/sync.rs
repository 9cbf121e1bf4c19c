//! The synchronization primitives of the parts that are model-checked: std's, or under
//! `cfg(loom)` loom's, whose every interleaving the models explore ("Model checking" in
//! `docs/robustness.md`). Re-exports only: a normal build uses std's types themselves.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
