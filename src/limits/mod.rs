//! Load protection shared by every request of a [`TelEchoRetry`](crate::TelEchoRetry),
//! kept per origin (scheme, host and port): a retry budget, a shared rate-limit cooldown
//! and client-side pacing, in this process or, with feature `redis`, across a fleet.
//!
//! | limit | default | what it does |
//! |---|---|---|
//! | [`RetryBudget`] | 20 % of requests + 10/s, over 10 s | a spent budget hands the response back ([`StopReason::Budget`](crate::StopReason::Budget)) instead of retrying |
//! | shared cooldown | on | a 429 with `Retry-After` holds back every request to the origin until then, first attempts included; one above [`max_retry_after`](crate::RetryPolicyBuilder::max_retry_after) refuses them ([`RetryErrorKind::RateLimited`](crate::RetryErrorKind::RateLimited)) |
//! | [`Pacing::adaptive`] | on | pacing at a rate learned from the origin's 429s and quota headers, from the first of them on; in process, or one rate for a fleet through Redis |
//! | [`Pacing`] | — | or a fixed rate: at most N attempts per period to the origin, spaced evenly at the moment they are sent; `without_pacing()`: none |
//!
//! They are configured in one place, a [`LimitsBuilder`], and shared by every clone of the
//! [`Limits`] it builds:
//!
//! ```
//! use std::time::Duration;
//! use telecho_retry::limits::{Limits, Pacing};
//! use telecho_retry::{RetryPolicy, TelEchoRetry};
//!
//! // One API key, two kinds of calls; one 429 holds both back, one rate paces both.
//! let limits = Limits::builder().pacing(Pacing::per_minute(600)).build();
//! let batch = TelEchoRetry::new(RetryPolicy::builder().max_retries(8).build())
//!     .with_limits(limits.clone());
//! let interactive = TelEchoRetry::new(RetryPolicy::builder().max_retries(1).build())
//!     .with_limits(limits);
//! # let _ = (batch, interactive);
//! ```
//!
//! Any number of origins keeps its own limits, in bounded memory: 1024 are kept apart (about
//! half a kilobyte each), and past that an origin with nothing running (no cooldown, no
//! paced slot ahead, no request in flight) is forgotten. When all 1024 are busy, further
//! origins share one of 16 overflow limits by hash: a cooldown may then hold back an
//! unrelated origin, but none is ever forgotten.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) mod adaptive;
mod budget;
pub(crate) mod instant;
mod local;
mod origin;
pub(crate) mod pacer;
mod pacing;
mod queue;
pub(crate) mod quota;
#[cfg(feature = "redis")]
mod redis;
mod table;

pub use budget::RetryBudget;
pub(crate) use budget::Withdrawal;
pub(crate) use local::LocalStore;
pub(crate) use origin::Origin;
pub(crate) use pacer::Pace;
#[cfg(any(feature = "redis", all(test, feature = "tower")))]
pub(crate) use pacer::Paced;
pub use pacing::Pacing;
#[doc(hidden)]
pub use quota::parse_quota_for_fuzzing;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisLimitsBuilder, RedisLimitsError};

/// The longest cooldown or refusal a 429 can start, whatever its `Retry-After` says (or a
/// fleet's store relays): a day.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(86_400);

// ===== the handle =====

/// The retry budgets, cooldowns and pacing shared by every request of the
/// [`TelEchoRetry`](crate::TelEchoRetry) values that hold it, one of each per origin.
/// Cheap to clone (an `Arc`). Built by [`Limits::builder`]; `Limits::default()` is the
/// builder's defaults (a budget, the shared cooldown, adaptive pacing).
///
/// ```
/// use telecho_retry::limits::Limits;
///
/// let limits = Limits::default();
/// let uri: http::Uri = "https://api.telecho.example/v1/agents".parse().unwrap();
/// assert_eq!(limits.cooldown_remaining(&uri), None);
/// ```
#[derive(Clone)]
pub struct Limits {
    store: Arc<dyn LimitStore>,
    /// Whether its origins learn from responses (adaptive pacing): read once per request
    /// from here, so that a request whose origin does not learn pays one branch.
    learns: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::builder().build()
    }
}

impl Limits {
    /// The settings, starting from the defaults.
    pub fn builder() -> LimitsBuilder {
        LimitsBuilder {
            budget: Some(RetryBudget::default()),
            cooldown: true,
            pacing: Some(Pacing::adaptive()),
        }
    }

    pub(crate) fn from_store(store: impl LimitStore) -> Self {
        Limits {
            store: Arc::new(store),
            learns: false,
        }
    }

    /// Whether the origins' limits learn from responses
    /// ([`OriginLimits::observe`]).
    #[inline]
    pub(crate) fn learns(&self) -> bool {
        self.learns
    }

    /// The limits of `origin`, created on first use.
    pub(crate) fn origin(&self, origin: &Origin<'_>) -> Arc<dyn OriginLimits> {
        self.store.origin(origin)
    }

    /// How long requests to `uri`'s origin must still hold back (a cooldown) or are
    /// refused, if at all.
    pub fn cooldown_remaining(&self, uri: &http::Uri) -> Option<Duration> {
        self.store
            .cooldown_remaining(&Origin::of_uri(uri), Instant::now())
    }

    /// The longest cooldown or refusal any origin is under, if any.
    pub fn longest_cooldown(&self) -> Option<Duration> {
        self.store.longest_cooldown(Instant::now())
    }

    /// Whether the fleet's store answered its last call in time (always `true` for limits
    /// kept in this process). While it does not, each replica paces alone at its share of
    /// the rate and keeps its cooldowns in memory. It starts `true`, before any call: a
    /// store that cannot be reached (down, a wrong CA or password) turns it `false` within
    /// the first connection attempt (about a second at most after `build`), not at
    /// once; a health check should wait for that, or for `fallbacks() > 0`.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn is_reachable(&self) -> bool {
        self.store.is_reachable()
    }

    /// How many times requests fell back on in-process limits because the fleet's store
    /// could not be reached in time (0 for limits kept in this process).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn fallbacks(&self) -> u64 {
        self.store.fallbacks()
    }
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Limits").field(&self.store).finish()
    }
}

// ===== the settings =====

/// The settings of [`Limits`], from [`Limits::builder`].
///
/// ```
/// use std::time::Duration;
/// use telecho_retry::limits::{Limits, Pacing, RetryBudget};
///
/// let limits = Limits::builder()
///     .retry_budget(RetryBudget::new(Duration::from_secs(30), 1, 0.1))
///     .pacing(Pacing::per_minute(600))
///     .build();
/// # let _ = limits;
/// ```
#[derive(Clone, Debug)]
pub struct LimitsBuilder {
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) cooldown: bool,
    pub(crate) pacing: Option<Pacing>,
}

impl LimitsBuilder {
    /// The retry budget of each origin.
    ///
    /// # Default
    ///
    /// [`RetryBudget::default`]: 20 % of requests plus 10 retries per second, over 10 s.
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// No retry budget: only the policy's `max_retries` bounds retries.
    pub fn without_retry_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Whether a 429 with a usable `Retry-After` holds back every request to its origin
    /// until then, first attempts included.
    ///
    /// # Default
    ///
    /// On.
    pub fn shared_cooldown(mut self, on: bool) -> Self {
        self.cooldown = on;
        self
    }

    /// Paces the attempts to each origin, first attempts and retries alike, to at most
    /// [`Pacing`]'s rate: a fixed one, or one learned from the origin's 429s and quota
    /// headers ([`Pacing::adaptive`]).
    ///
    /// # Default
    ///
    /// [`Pacing::adaptive()`]: no pacing until the origin's first 429 or quota header.
    pub fn pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = Some(pacing);
        self
    }

    /// No pacing: attempts go as soon as the cooldown and the policy let them, whatever the
    /// origin answers.
    pub fn without_pacing(mut self) -> Self {
        self.pacing = None;
        self
    }

    /// Limits kept in this process.
    pub fn build(self) -> Limits {
        let learns = self.pacing.is_some_and(|p| p.is_adaptive());
        Limits {
            learns,
            ..Limits::from_store(LocalStore::new(self.budget, self.cooldown, self.pacing))
        }
    }

    /// Limits shared through the Redis at `url` by every replica that uses the same
    /// `scope` (feature `redis`): see [`RedisLimitsBuilder`]. These settings are the
    /// fleet's; every replica of a scope must use the same.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(self, url: impl Into<String>, scope: impl Into<String>) -> RedisLimitsBuilder {
        RedisLimitsBuilder::new(self, redis::Target::Single(url.into()), scope.into())
    }

    /// Limits shared through a Redis Cluster by every replica that uses the same `scope`
    /// (feature `redis-cluster`): as [`redis`](Self::redis), with the URLs of some of the
    /// cluster's nodes (one is enough; the others are found through it). All must have the
    /// same scheme, user name and password: `redis://` or, with feature `redis-tls`,
    /// `rediss://`.
    ///
    /// A scope's keys share one hash tag, so they live in one slot: each call goes to the
    /// node that owns it, and follows the slot through a failover. While the slot has no
    /// node (a failover under way), requests use in-process limits, as with Redis down.
    ///
    /// ```no_run
    /// use telecho_retry::limits::{Limits, Pacing};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limits = Limits::builder()
    ///     .pacing(Pacing::per_minute(600))
    ///     .redis_cluster(
    ///         ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"],
    ///         "telecho-key-1",
    ///     )
    ///     .build()?;
    /// # let _ = limits; Ok(()) }
    /// ```
    #[cfg(feature = "redis-cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
    pub fn redis_cluster<U: Into<String>>(
        self,
        nodes: impl IntoIterator<Item = U>,
        scope: impl Into<String>,
    ) -> RedisLimitsBuilder {
        let nodes = nodes.into_iter().map(Into::into).collect();
        RedisLimitsBuilder::new(self, redis::Target::Cluster(nodes), scope.into())
    }
}

// ===== what the engine talks to =====

/// Where the limits live: in this process ([`LocalStore`]) or in a fleet's store. The
/// engine asks it once per logical request for the limits of the request's origin.
pub(crate) trait LimitStore: Send + Sync + fmt::Debug + 'static {
    /// The limits of `origin`, created on first use.
    fn origin(&self, origin: &Origin<'_>) -> Arc<dyn OriginLimits>;

    /// The cooldown or refusal left for `origin`, if one holds it back.
    fn cooldown_remaining(&self, origin: &Origin<'_>, now: Instant) -> Option<Duration>;

    /// The longest cooldown or refusal any origin is under, if any.
    fn longest_cooldown(&self, now: Instant) -> Option<Duration>;

    /// Whether the store answered its last call in time.
    #[cfg(feature = "redis")]
    fn is_reachable(&self) -> bool {
        true
    }

    /// How many times requests fell back on in-process limits.
    #[cfg(feature = "redis")]
    fn fallbacks(&self) -> u64 {
        0
    }
}

/// The limits of one origin, as the engine uses them. Every method is called on the
/// request path: it answers from memory, never waits on I/O (a paced slot's wait is a
/// future the engine bounds).
pub(crate) trait OriginLimits: Send + Sync + fmt::Debug {
    /// Records a new logical request, started at `now` (a deposit into the budget).
    fn deposit(&self, now: Instant);

    /// Takes one retry from the budget; `None` when it is spent.
    fn withdraw(&self, now: Instant) -> Option<Withdrawal>;

    /// Gives back a retry that was never sent (its request was cancelled while it waited).
    fn refund(&self, taken: Withdrawal);

    /// Holds every request to this origin back until `until`, if later than the current
    /// cooldown.
    fn cool_down_until(&self, until: Instant);

    /// How long requests to this origin must still hold back, if at all.
    fn cooldown_remaining(&self, now: Instant) -> Option<Duration>;

    /// Refuses every request to this origin until `until`, if later than the current
    /// refusal.
    fn refuse_until(&self, until: Instant);

    /// How long requests to this origin are still refused, if at all.
    fn refusal_remaining(&self, now: Instant) -> Option<Duration>;

    /// Takes the slot of the attempt about to be sent: [`Pace::Go`] now, [`Pace::Wait`]
    /// for a future that resolves when the slot has come (dropping it gives the slot
    /// back), or [`Pace::TooLong`] when the slot lies more than `max_wait` ahead (nothing
    /// is taken). `deadline_left`: the time left before the request's deadline, if it has
    /// one (a fleet store stops waiting on its round trip in time to pace in process).
    fn pace(&self, max_wait: Duration, deadline_left: Option<Duration>) -> Pace;

    /// The response to an attempt sent at `sent_at` arrived with `status` and `headers`:
    /// adaptive pacing learns the origin's rate from it (a 429 cuts it, a success regrows
    /// it, a quota header sets it). Called only when [`Limits::learns`].
    fn observe(&self, sent_at: Instant, status: http::StatusCode, headers: &http::HeaderMap) {
        let _ = (sent_at, status, headers);
    }
}

#[cfg(test)]
mod tests;
