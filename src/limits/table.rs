//! [`OriginTable`]: the limits of each origin, bounded in number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rustc_hash::FxBuildHasher;
use tokio::time::Instant;

/// The most origins a table keeps apart.
pub(crate) const MAX_ORIGINS: usize = 1024;

/// Limits shared by the origins that come past [`MAX_ORIGINS`] while every kept origin is
/// busy: one of these, chosen by the origin's key.
const OVERFLOW: usize = 16;

/// Origins by key. The keys are hashes already: the map hashes them again with FxHash.
type OriginMap<T> = HashMap<u64, Arc<T>, FxBuildHasher>;

/// What a table does with a new origin when it is full and no kept origin can be forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Share one of [`OVERFLOW`] entries with other such origins: their state is kept
    /// (a cooldown may then hold back an origin that shares the entry, never is one lost).
    Share,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// Make a fresh entry that is not kept (for entries that hold no state of their own).
    Fresh,
}

/// The limits of each origin, read without a lock on the request path; replaced whole
/// (under `insert`) when an origin is added. At most [`MAX_ORIGINS`] are kept: past it,
/// origins that no request holds and that are not `busy` (a cooldown running, a paced slot
/// ahead) are forgotten; if none can be, the table does as its [`WhenFull`] says. Memory
/// is bounded and state that still matters is never dropped.
pub(crate) struct OriginTable<T> {
    origins: ArcSwap<OriginMap<T>>,
    insert: Mutex<()>,
    when_full: WhenFull,
    overflow: [OnceLock<Arc<T>>; OVERFLOW],
}

impl<T> OriginTable<T> {
    pub(crate) fn new(when_full: WhenFull) -> Self {
        OriginTable {
            origins: ArcSwap::from_pointee(OriginMap::default()),
            insert: Mutex::new(()),
            when_full,
            overflow: Default::default(),
        }
    }

    /// The entry of `key`, if kept apart.
    pub(crate) fn get(&self, key: u64) -> Option<Arc<T>> {
        self.origins.load().get(&key).cloned()
    }

    /// Every entry: those kept apart and the shared overflow entries in use.
    pub(crate) fn all(&self) -> Vec<Arc<T>> {
        let mut all: Vec<Arc<T>> = self.origins.load().values().cloned().collect();
        all.extend(self.overflow.iter().filter_map(|o| o.get().cloned()));
        all
    }

    /// How many origins are kept apart.
    pub(crate) fn len(&self) -> usize {
        self.origins.load().len()
    }

    /// The entry of `key`, made by `make` on first use.
    pub(crate) fn get_or_insert(
        &self,
        key: u64,
        busy: impl Fn(&T, Instant) -> bool,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        if let Some(found) = self.get(key) {
            return found;
        }
        let now = Instant::now();
        // An origin that went to an overflow entry stays there while that entry is busy:
        // a fresh entry of its own would forget its cooldown.
        let overflow = &self.overflow[(key % OVERFLOW as u64) as usize];
        if let Some(shared) = overflow.get() {
            if busy(shared, now) {
                return Arc::clone(shared);
            }
        }
        let _insert = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = self.get(key) {
            return found;
        }
        let mut origins = OriginMap::clone(&self.origins.load());
        if origins.len() >= MAX_ORIGINS {
            // Idle: held by the map in use and by this copy of it, by no request.
            origins.retain(|_, o| Arc::strong_count(o) > 2 || busy(o, now));
            if origins.len() >= MAX_ORIGINS {
                return match self.when_full {
                    WhenFull::Share => Arc::clone(overflow.get_or_init(|| Arc::new(make()))),
                    WhenFull::Fresh => Arc::new(make()),
                };
            }
        }
        let created = Arc::new(make());
        origins.insert(key, Arc::clone(&created));
        self.origins.store(Arc::new(origins));
        created
    }
}
