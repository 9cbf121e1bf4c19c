//! Limits shared by every request through one [`TelEchoRetry`](crate::TelEchoRetry): the
//! retry budget and the rate-limit cooldown, kept apart per [`Origin`].
//!
//! Retries multiply load exactly when the server can least take it. Two mechanisms keep
//! that in check, both shared by all clones of one `TelEchoRetry` (one [`SharedLimits`]),
//! each kept per origin (scheme, host and port of the request URL), so that one API's
//! limits never hold back requests to another:
//!
//! - **Retry budget** ([`RetryBudget`]): retries may add at most a share of extra load
//!   (default 20 % of requests, plus a floor of 10 retries per second so that a quiet client
//!   can still retry), measured over a sliding window (default 10 s). When it is spent the
//!   response is returned with [`StopReason::Budget`](crate::StopReason::Budget) instead of
//!   being retried. The algorithm is Finagle's, as in tower's `TpsBudget`; tower's type is
//!   not reused because the core must build without tower, its constructor panics on
//!   out-of-range values where ours clamps them, and its integer arithmetic lets any ratio
//!   above 0.5 allow one retry per request (ours keeps the ratio to within one retry).
//! - **Shared cooldown**: when a request gets a 429 with `Retry-After: T`, every request
//!   to the same origin waits until then before its next attempt, first attempts included
//!   (plus the policy's `retry_after_spread`), so that staggered requests do not each
//!   collect their own 429: the contract's limits are per API key. A request whose wait
//!   would cross its [deadline](crate::RetryPolicyBuilder::deadline) fails at once instead.
//!   A 429 whose `Retry-After` is above
//!   [`max_retry_after`](crate::RetryPolicyBuilder::max_retry_after) (say
//!   `rate_limit_per_hour`) is handed back at once and also starts the cooldown: until it
//!   passes, new requests to the origin are not sent but fail at once with
//!   [`RetryErrorKind::RateLimited`](crate::RetryErrorKind::RateLimited), which carries the
//!   wait left. The cooldown cannot stop requests already in flight when the first 429
//!   arrives: fully concurrent requests may each meet it. On by default for 429; see
//!   [`RetryPolicyBuilder::shared_cooldown`](crate::RetryPolicyBuilder::shared_cooldown).
//!
//! - **Client-side pacing** ([`Pacing`], opt-in:
//!   [`RetryPolicyBuilder::pacing`](crate::RetryPolicyBuilder::pacing)): at most N attempts
//!   per period to the origin, first attempts and retries alike, spaced evenly by a GCRA
//!   (the `governor` crate, on tokio's clock). An attempt whose slot lies ahead waits for
//!   it, first come first served, holding no capacity of the inner service, within its
//!   deadline; one whose slot lies further ahead than `max_retry_after` fails at once with
//!   [`RetryErrorKind::RateLimited`](crate::RetryErrorKind::RateLimited), or than the
//!   deadline with [`RetryErrorKind::Deadline`](crate::RetryErrorKind::Deadline), carrying
//!   the wait, and takes no slot. Paced at the server's limit, a burst of concurrent
//!   requests meets no 429. A fleet store keeps the same GCRA for every replica.
//!
//! The request path reads the cooldown from an atomic; a request holds its origin's
//! limits from start to end. At most 256 origins are kept apart; past that, origins with
//! nothing in flight and no cooldown are forgotten, and if none can be, a request to a new
//! origin gets limits of its own that no other request shares (no budget or cooldown across
//! its requests, but never another origin's cooldown).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hasher;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustc_hash::{FxBuildHasher, FxHasher};
use std::time::Duration;

use tokio::time::Instant;

use super::instant::AtomicInstant;
use super::pacer::{LocalPacer, Pace};
use crate::policy::{Pacing, RetryBudget, RetryPolicy};

const SLOTS: usize = 10;

/// Fixed-point scale of the budget's balance: a request deposits `SCALE` when the ratio is
/// above zero, a retry withdraws `SCALE / ratio`, rounded. Integer division of `1 / ratio`
/// (what tower's `TpsBudget` does) would let a ratio of 0.6 allow as many retries as 1.0.
const SCALE: i64 = 1000;

/// The running token bucket of a [`RetryBudget`]: deposits per request, withdrawals per
/// retry, kept in `SLOTS` slots of `ttl / SLOTS` each.
///
/// The request path takes no lock: a deposit is one atomic add (and an atomic read of when
/// the window last slid); only sliding the window, once per `ttl / SLOTS`, takes the
/// `slide` lock. A withdrawal reads the balance and then subtracts, so two retries racing
/// for the last token may both get it: the budget may be overdrawn by the number of
/// retries decided at the same instant, never more (tower's `TpsBudget` behaves alike).
struct Budget {
    current: AtomicI64,
    slots: [AtomicI64; SLOTS],
    /// Where `current` is committed when the window slides, and when it last slid
    /// (nanoseconds after `base`); written under `slide` only.
    index: AtomicUsize,
    since: AtomicU64,
    slide: Mutex<()>,
    base: Instant,
    reserve: i64,
    /// A slot's span (`ttl / SLOTS`) in nanoseconds, at least 1.
    window_nanos: u64,
    deposit: i64,
    withdraw: i64,
}

impl Budget {
    fn new(cfg: RetryBudget, base: Instant) -> Self {
        let (deposit, withdraw) = if cfg.retry_ratio() <= 0.0 {
            (0, SCALE)
        } else {
            let w = (SCALE as f64 / f64::from(cfg.retry_ratio())).round();
            (SCALE, (w as i64).max(1))
        };
        Budget {
            current: AtomicI64::new(0),
            slots: Default::default(),
            index: AtomicUsize::new(0),
            since: AtomicU64::new(0),
            slide: Mutex::new(()),
            base,
            reserve: i64::from(cfg.min_per_sec())
                .saturating_mul(cfg.ttl().as_secs() as i64)
                .saturating_mul(withdraw),
            window_nanos: u64::try_from((cfg.ttl() / SLOTS as u32).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
            deposit,
            withdraw,
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Slides the window to `now` if a slot's time has passed (rare: takes the lock).
    fn expire(&self, now: Instant) {
        let now = self.nanos(now);
        let window = self.window_nanos;
        if now.saturating_sub(self.since.load(Ordering::Acquire)) < window {
            return;
        }
        let _slide = self.slide.lock().unwrap_or_else(|e| e.into_inner());
        let since = self.since.load(Ordering::Acquire);
        let mut elapsed = now.saturating_sub(since);
        if elapsed < window {
            return; // another thread slid it meanwhile
        }
        let mut index = self.index.load(Ordering::Relaxed);
        let committed = self.current.swap(0, Ordering::AcqRel);
        self.slots[index].store(committed, Ordering::Release);
        index = (index + 1) % SLOTS;
        let mut cleared = 0;
        while elapsed > window && cleared < SLOTS {
            self.slots[index].store(0, Ordering::Release);
            elapsed -= window;
            index = (index + 1) % SLOTS;
            cleared += 1;
        }
        // The slot that `current` will be committed to next holds data one window older
        // than the ttl: it no longer counts.
        self.slots[index].store(0, Ordering::Release);
        self.index.store(index, Ordering::Relaxed);
        self.since.store(now, Ordering::Release);
    }

    fn deposit(&self, now: Instant) {
        self.expire(now);
        if self.deposit != 0 {
            self.current.fetch_add(self.deposit, Ordering::Relaxed);
        }
    }

    fn withdraw(&self) -> bool {
        self.expire(Instant::now());
        let balance = self
            .slots
            .iter()
            .fold(self.current.load(Ordering::Acquire), |a, s| {
                a.saturating_add(s.load(Ordering::Acquire))
            })
            .saturating_add(self.reserve);
        if balance >= self.withdraw {
            self.current.fetch_sub(self.withdraw, Ordering::AcqRel);
            true
        } else {
            false
        }
    }

    fn refund(&self) {
        self.current.fetch_add(self.withdraw, Ordering::AcqRel);
    }
}

/// The instant until which requests hold back after a 429 (a cooldown, or a refusal). An
/// atomic: the request path reads it without a lock.
type Cooldown = AtomicInstant;

/// An origin: scheme, host and port of a request's URL, borrowed from the request. Retry
/// budgets and rate-limit cooldowns are kept per origin (see the [module docs](crate::limits)).
/// A request without an absolute URL (`/path`, as in tests over `tower::service_fn`)
/// has the empty origin, shared by all such requests.
///
/// Two origins are equal when their schemes and hosts are equal without regard to ASCII
/// case and their ports are equal; `Display` writes `scheme://host:port` in lowercase (no
/// user info, path or query: fit for a store's key).
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<u16>,
}

impl<'a> Origin<'a> {
    /// The origin of `uri`; the port defaults to the scheme's (80 for `http`, 443 for
    /// `https`).
    pub fn of_uri(uri: &'a http::Uri) -> Self {
        let scheme = uri.scheme_str();
        // One pass over the authority (`Uri::host` and `Uri::port_u16` would make two).
        let (host, port) = match uri.authority() {
            Some(authority) => split_authority(authority.as_str()),
            None => (None, None),
        };
        Origin {
            scheme,
            host,
            port: port.or_else(|| default_port(scheme)),
        }
    }

    /// An origin from its parts (`port` `None`: the scheme's default).
    pub fn new(scheme: Option<&'a str>, host: Option<&'a str>, port: Option<u16>) -> Self {
        Origin {
            scheme,
            host,
            port: port.or_else(|| default_port(scheme)),
        }
    }

    /// The scheme, as the request spelled it.
    pub fn scheme(&self) -> Option<&'a str> {
        self.scheme
    }

    /// The host, as the request spelled it (an IPv6 address in brackets).
    pub fn host(&self) -> Option<&'a str> {
        self.host
    }

    /// The port, or the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// A 64-bit key: scheme and host compared without regard to ASCII case. A fast,
    /// non-cryptographic hash (it runs on every request): origins are the client's own
    /// configuration, not an attacker's input; two that collided would share limits.
    pub(crate) fn key(&self) -> u64 {
        let mut h = FxHasher::default();
        for part in [self.scheme, self.host] {
            match part {
                Some(s) => {
                    // Eight bytes a word, each folded to lowercase.
                    for chunk in s.as_bytes().chunks(8) {
                        let mut word = [0u8; 8];
                        for (w, b) in word.iter_mut().zip(chunk) {
                            *w = b.to_ascii_lowercase();
                        }
                        h.write_u64(u64::from_le_bytes(word));
                    }
                    h.write_usize(s.len());
                }
                None => h.write_u8(0),
            }
        }
        h.write_u32(self.port.map_or(u32::MAX, u32::from));
        h.finish()
    }
}

/// Host and port of an authority (`user@host:port`), in one backward scan of what are a
/// few dozen bytes (cheaper here than `memrchr`'s setup).
fn split_authority(authority: &str) -> (Option<&str>, Option<u16>) {
    let bytes = authority.as_bytes();
    let start = bytes
        .iter()
        .rposition(|&b| b == b'@')
        .map_or(0, |at| at + 1);
    let hostport = &authority[start..];
    // `[::1]` has colons but no port; `[::1]:8080` and `h:8080` have one.
    let digits = hostport
        .bytes()
        .rev()
        .take_while(u8::is_ascii_digit)
        .count();
    let colon = hostport.len().checked_sub(digits + 1);
    match colon {
        Some(c) if hostport.as_bytes()[c] == b':' && !hostport[..c].ends_with(':') => {
            // `host:` (an empty port) is the scheme's default port, as RFC 3986 says.
            (Some(&hostport[..c]), hostport[c + 1..].parse().ok())
        }
        _ => (Some(hostport), None),
    }
}

impl PartialEq for Origin<'_> {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a.is_none() && b.is_none(),
        };
        same(self.scheme, other.scheme) && same(self.host, other.host) && self.port == other.port
    }
}

impl Eq for Origin<'_> {}

impl std::hash::Hash for Origin<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.key());
    }
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lower = |s: Option<&str>| s.unwrap_or("").to_ascii_lowercase();
        write!(f, "{}://{}", lower(self.scheme), lower(self.host))?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

fn default_port(scheme: Option<&str>) -> Option<u16> {
    match scheme {
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        _ => None,
    }
}

// ===== the store interface =====

/// Where the limits of a [`SharedLimits`] live: in this process ([`SharedLimits::in_process`])
/// or, behind this trait, in a store shared by several processes. The engine asks it once
/// per logical request for the limits of the request's origin, and then only talks to the
/// [`OriginLimits`] it got.
pub trait LimitStore: Send + Sync + fmt::Debug + 'static {
    /// The budget and cooldown of `origin`, created on first use.
    fn origin(&self, origin: &Origin<'_>) -> Arc<dyn OriginLimits>;

    /// The cooldown or refusal left for `origin`, if one holds it back. The default asks
    /// the origin's [`OriginLimits`].
    fn cooldown_remaining(&self, origin: &Origin<'_>, now: Instant) -> Option<Duration> {
        let o = self.origin(origin);
        o.cooldown_remaining(now).max(o.refusal_remaining(now))
    }

    /// The longest cooldown any origin is under, if the store can tell (`None` by default).
    fn longest_cooldown(&self, now: Instant) -> Option<Duration> {
        let _ = now;
        None
    }
}

/// The budget and cooldown of one origin, as the engine uses them. Every method is called
/// on the request path: it must answer from memory, never wait on I/O.
pub trait OriginLimits: Send + Sync + fmt::Debug {
    /// Records a new logical request, started at `now` (a deposit into the budget).
    fn deposit(&self, now: Instant);

    /// Takes one retry from the budget; `false` when it is spent.
    fn withdraw(&self) -> bool;

    /// Returns a retry taken with [`withdraw`](Self::withdraw) that was never sent (its
    /// request was cancelled while it waited).
    fn refund(&self);

    /// Holds every request to this origin back until `until` (if later than the current
    /// cooldown): a 429 whose `Retry-After` the policy waits for.
    fn cool_down_until(&self, until: Instant);

    /// How long requests to this origin must still hold back, if at all.
    fn cooldown_remaining(&self, now: Instant) -> Option<Duration>;

    /// Refuses every request to this origin until `until` (if later than the current
    /// refusal): a 429 whose `Retry-After` is above the policy's cap. Requests are not held
    /// back but fail at once while it lasts.
    fn refuse_until(&self, until: Instant);

    /// How long requests to this origin are still refused, if at all.
    fn refusal_remaining(&self, now: Instant) -> Option<Duration>;

    /// Takes the slot of the next attempt to this origin under client-side
    /// [`Pacing`](crate::limits::Pacing): [`Pace::Go`] to send now, [`Pace::Wait`] with a
    /// future that resolves when the slot has come (it may do I/O: the engine bounds it by
    /// the request's deadline), or [`Pace::TooLong`] when the slot lies more than
    /// `max_wait` ahead (then nothing is taken). Called before every attempt, retries
    /// included. The default: no pacing, always [`Pace::Go`].
    fn pace(&self, max_wait: Duration) -> Pace {
        let _ = max_wait;
        Pace::Go
    }
}

// ===== in process =====

/// The budget, cooldown and pacer of one origin, in this process.
pub(crate) struct InProcessOrigin {
    budget: Option<Budget>,
    cooldown: Option<Cooldown>,
    refusal: Option<Cooldown>,
    pacer: Option<LocalPacer>,
}

impl OriginLimits for InProcessOrigin {
    fn deposit(&self, now: Instant) {
        if let Some(b) = &self.budget {
            b.deposit(now);
        }
    }

    fn withdraw(&self) -> bool {
        self.budget.as_ref().is_none_or(Budget::withdraw)
    }

    fn refund(&self) {
        if let Some(b) = &self.budget {
            b.refund();
        }
    }

    fn cool_down_until(&self, until: Instant) {
        if let Some(c) = &self.cooldown {
            c.extend(until);
        }
    }

    fn cooldown_remaining(&self, now: Instant) -> Option<Duration> {
        self.cooldown.as_ref().and_then(|c| c.remaining(now))
    }

    fn refuse_until(&self, until: Instant) {
        if let Some(c) = &self.refusal {
            c.extend(until);
        }
    }

    fn refusal_remaining(&self, now: Instant) -> Option<Duration> {
        self.refusal.as_ref().and_then(|c| c.remaining(now))
    }

    fn pace(&self, max_wait: Duration) -> Pace {
        match &self.pacer {
            Some(pacer) => pacer.pace(max_wait),
            None => Pace::Go,
        }
    }
}

impl fmt::Debug for InProcessOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessOrigin")
            .field("budget", &self.budget.is_some())
            .field(
                "cooldown_remaining",
                &self.cooldown_remaining(Instant::now()),
            )
            .field("pacer", &self.pacer)
            .finish()
    }
}

/// The most origins one in-process store tracks apart; past it, origins with nothing in
/// flight and no cooldown are forgotten, and if none can be, a request to a new origin gets
/// limits of its own, kept nowhere.
const MAX_ORIGINS: usize = 256;

/// Origins by key. The keys are hashes already: the map hashes them again with FxHash, not
/// SipHash.
type OriginMap<T> = HashMap<u64, Arc<T>, FxBuildHasher>;

/// The limits of each origin, read without a lock on the request path; replaced whole
/// (under `insert`) when an origin is added, which happens once per origin. At most
/// [`MAX_ORIGINS`]: past it, origins that no request holds and that are not `busy` are
/// forgotten, and if none can be, a new origin gets limits kept nowhere.
pub(crate) struct OriginTable<T> {
    origins: ArcSwap<OriginMap<T>>,
    insert: Mutex<()>,
}

impl<T> OriginTable<T> {
    pub(crate) fn new() -> Self {
        OriginTable {
            origins: ArcSwap::from_pointee(OriginMap::default()),
            insert: Mutex::new(()),
        }
    }

    pub(crate) fn get(&self, key: u64) -> Option<Arc<T>> {
        self.origins.load().get(&key).cloned()
    }

    /// Every origin kept.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<OriginMap<T>>> {
        self.origins.load()
    }

    /// The limits of `key`, made by `make` on first use.
    pub(crate) fn get_or_insert(
        &self,
        key: u64,
        busy: impl Fn(&T, Instant) -> bool,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        if let Some(found) = self.get(key) {
            return found;
        }
        let _insert = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = self.get(key) {
            return found;
        }
        let mut origins = OriginMap::clone(&self.origins.load());
        if origins.len() >= MAX_ORIGINS {
            let now = Instant::now();
            // Idle: held by the map in use and by this copy of it, by no request.
            origins.retain(|_, o| Arc::strong_count(o) > 2 || busy(o, now));
            if origins.len() >= MAX_ORIGINS {
                // Limits of its own, kept nowhere: never another origin's cooldown.
                return Arc::new(make());
            }
        }
        let created = Arc::new(make());
        origins.insert(key, Arc::clone(&created));
        self.origins.store(Arc::new(origins));
        created
    }
}

/// The in-process [`LimitStore`]: per-origin budgets and cooldowns in memory, the
/// cooldown an atomic read on the request path.
pub(crate) struct InProcess {
    budget: Option<RetryBudget>,
    cooldown: bool,
    pacing: Option<Pacing>,
    base: Instant,
    origins: OriginTable<InProcessOrigin>,
}

impl InProcess {
    pub(crate) fn new(budget: Option<RetryBudget>, cooldown: bool, pacing: Option<Pacing>) -> Self {
        let base = Instant::now();
        InProcess {
            budget,
            cooldown,
            pacing,
            base,
            origins: OriginTable::new(),
        }
    }

    fn new_origin(&self) -> InProcessOrigin {
        InProcessOrigin {
            budget: self.budget.map(|b| Budget::new(b, self.base)),
            cooldown: self.cooldown.then(|| Cooldown::new(self.base)),
            refusal: self.cooldown.then(|| Cooldown::new(self.base)),
            pacer: self.pacing.map(LocalPacer::new),
        }
    }

    fn get(&self, key: u64) -> Option<Arc<InProcessOrigin>> {
        self.origins.get(key)
    }
}

impl LimitStore for InProcess {
    fn origin(&self, origin: &Origin<'_>) -> Arc<dyn OriginLimits> {
        self.origins.get_or_insert(
            origin.key(),
            |o, now| o.cooldown_remaining(now).is_some() || o.refusal_remaining(now).is_some(),
            || self.new_origin(),
        )
    }

    fn cooldown_remaining(&self, origin: &Origin<'_>, now: Instant) -> Option<Duration> {
        let o = self.get(origin.key())?;
        o.cooldown_remaining(now).max(o.refusal_remaining(now))
    }

    fn longest_cooldown(&self, now: Instant) -> Option<Duration> {
        self.origins
            .load()
            .values()
            .filter_map(|o| o.cooldown_remaining(now).max(o.refusal_remaining(now)))
            .max()
    }
}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins = self.origins.load().len();
        f.debug_struct("InProcess")
            .field("budget", &self.budget)
            .field("shared_cooldown", &self.cooldown)
            .field("pacing", &self.pacing)
            .field("origins", &origins)
            .field("longest_cooldown", &self.longest_cooldown(Instant::now()))
            .finish()
    }
}

// ===== the handle =====

/// The retry budgets and rate-limit cooldowns shared by every request of the
/// [`TelEchoRetry`](crate::TelEchoRetry) values that hold this handle, one of each per
/// [`Origin`]. Cheap to clone (an `Arc`).
///
/// Each `TelEchoRetry` creates its own from its policy; create one yourself to share it
/// between several, even with different policies:
///
/// ```
/// use telecho_retry::limits::{RetryBudget, SharedLimits};
/// use telecho_retry::{RetryPolicy, TelEchoRetry};
///
/// // One API key, two kinds of calls: a patient policy for batch jobs, a quick one for
/// // interactive calls; one 429 holds both back.
/// let limits = SharedLimits::in_process(Some(RetryBudget::default()), true);
/// let batch = TelEchoRetry::new(RetryPolicy::builder().max_retries(8).build())
///     .with_limits(limits.clone());
/// let interactive = TelEchoRetry::new(RetryPolicy::builder().max_retries(1).build())
///     .with_limits(limits);
/// # let _ = (batch, interactive);
/// ```
#[derive(Clone)]
pub struct SharedLimits {
    store: Arc<dyn LimitStore>,
    /// The store is this crate's in-process one: an origin's limits stay that origin's
    /// for as long as anyone holds them (the tower service keeps the last ones it used).
    in_process: bool,
}

impl SharedLimits {
    /// In-process limits as the policy configures them
    /// ([`retry_budget`](crate::RetryPolicyBuilder::retry_budget),
    /// [`shared_cooldown`](crate::RetryPolicyBuilder::shared_cooldown),
    /// [`pacing`](crate::RetryPolicyBuilder::pacing)).
    pub fn new(policy: &RetryPolicy) -> Self {
        SharedLimits::from_in_process(InProcess::new(
            policy.budget(),
            policy.shared_cooldown(),
            policy.pacing(),
        ))
    }

    /// In-process limits: a retry budget (`None`: none) and whether a 429 holds back the
    /// other requests to its origin; no pacing (use [`new`](Self::new) with a policy that
    /// sets [`pacing`](crate::RetryPolicyBuilder::pacing) for that).
    pub fn in_process(budget: Option<RetryBudget>, shared_cooldown: bool) -> Self {
        SharedLimits::from_in_process(InProcess::new(budget, shared_cooldown, None))
    }

    fn from_in_process(store: InProcess) -> Self {
        SharedLimits {
            store: Arc::new(store),
            in_process: true,
        }
    }

    /// Whether the limits are kept in this process by this crate's own store.
    pub(crate) fn is_in_process(&self) -> bool {
        self.in_process
    }

    /// Limits kept in `store`.
    pub fn from_store(store: impl LimitStore) -> Self {
        SharedLimits {
            store: Arc::new(store),
            in_process: false,
        }
    }

    /// The limits of `origin`, created on first use.
    pub(crate) fn origin(&self, origin: &Origin<'_>) -> Arc<dyn OriginLimits> {
        self.store.origin(origin)
    }

    /// How long requests to `origin` must still hold back, if at all.
    pub fn cooldown_remaining(&self, origin: &Origin<'_>) -> Option<Duration> {
        self.store.cooldown_remaining(origin, Instant::now())
    }

    /// The longest cooldown any origin is under, if any (and if the store can tell).
    pub fn longest_cooldown(&self) -> Option<Duration> {
        self.store.longest_cooldown(Instant::now())
    }
}

impl fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedLimits").field(&self.store).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget: RetryBudget) -> Arc<dyn OriginLimits> {
        SharedLimits::new(&RetryPolicy::builder().retry_budget(budget).build())
            .origin(&Origin::default())
    }

    fn remaining(scope: &Arc<dyn OriginLimits>) -> Option<Duration> {
        scope.cooldown_remaining(Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn floor_allows_min_per_sec_times_ttl() {
        let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
        let allowed = (0..100).filter(|_| l.withdraw()).count();
        assert_eq!(allowed, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_buy_a_share_of_retries() {
        let l = limits(RetryBudget::new(Duration::from_secs(10), 0, 0.2));
        for _ in 0..50 {
            l.deposit(Instant::now());
        }
        let allowed = (0..100).filter(|_| l.withdraw()).count();
        assert_eq!(allowed, 10, "20 % of 50 requests");
    }

    #[tokio::test(start_paused = true)]
    async fn every_ratio_allows_its_share_of_100_requests() {
        for tenth in 1..=10 {
            for ratio in [tenth as f32 / 10.0, tenth as f32 / 10.0 - 0.05, 1.0 / 3.0] {
                let l = limits(RetryBudget::new(Duration::from_secs(10), 0, ratio));
                for _ in 0..100 {
                    l.deposit(Instant::now());
                }
                let allowed = (0..1000).filter(|_| l.withdraw()).count() as i64;
                let want = (100.0 * f64::from(ratio)).floor() as i64;
                assert!(
                    (allowed - want).abs() <= 1,
                    "ratio {ratio}: {allowed} retries for 100 requests, want {want} ± 1"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn spent_budget_refills_as_the_window_slides() {
        let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
        assert_eq!((0..100).filter(|_| l.withdraw()).count(), 10);
        assert!(!l.withdraw());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!l.withdraw(), "withdrawals still inside the window");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!((0..100).filter(|_| l.withdraw()).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn refund_gives_a_retry_back() {
        let l = limits(RetryBudget::new(Duration::from_secs(10), 1, 0.0));
        assert_eq!((0..100).filter(|_| l.withdraw()).count(), 10);
        l.refund();
        assert!(l.withdraw());
        assert!(!l.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn no_budget_never_refuses() {
        let l = SharedLimits::new(&RetryPolicy::builder().without_retry_budget().build())
            .origin(&Origin::default());
        assert!((0..10_000).all(|_| l.withdraw()));
    }

    #[test]
    fn out_of_range_settings_are_clamped() {
        let b = RetryBudget::new(Duration::ZERO, u32::MAX, f32::NAN);
        assert_eq!(b.ttl(), Duration::from_secs(1));
        assert_eq!(b.retry_ratio(), 0.0);
        let b = RetryBudget::new(Duration::from_secs(3600), 0, 5000.0);
        assert_eq!(b.ttl(), Duration::from_secs(60));
        assert_eq!(b.retry_ratio(), 1000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_keeps_the_latest_instant() {
        let l = SharedLimits::new(&RetryPolicy::default()).origin(&Origin::default());
        assert_eq!(remaining(&l), None);
        let now = Instant::now();
        l.cool_down_until(now + Duration::from_secs(5));
        l.cool_down_until(now + Duration::from_secs(2));
        assert_eq!(remaining(&l), Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(remaining(&l), None);
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_can_be_turned_off() {
        let l = SharedLimits::new(&RetryPolicy::builder().shared_cooldown(false).build())
            .origin(&Origin::default());
        l.cool_down_until(Instant::now() + Duration::from_secs(5));
        assert_eq!(remaining(&l), None);
    }

    #[tokio::test(start_paused = true)]
    async fn origins_have_their_own_cooldown_and_budget() {
        let shared = SharedLimits::new(
            &RetryPolicy::builder()
                .retry_budget(RetryBudget::new(Duration::from_secs(10), 1, 0.0))
                .build(),
        );
        let a: http::Uri = "http://api.example:8080/v1/calls".parse().unwrap();
        let a_again: http::Uri = "HTTP://API.EXAMPLE:8080/other".parse().unwrap();
        let b: http::Uri = "http://api.example:8081/v1/calls".parse().unwrap();
        let (a, a_again, b) = (
            Origin::of_uri(&a),
            Origin::of_uri(&a_again),
            Origin::of_uri(&b),
        );
        shared
            .origin(&a)
            .cool_down_until(Instant::now() + Duration::from_secs(30));
        assert_eq!(
            shared.cooldown_remaining(&a_again),
            Some(Duration::from_secs(30))
        );
        assert_eq!(shared.cooldown_remaining(&b), None);
        assert_eq!(
            (0..100).filter(|_| shared.origin(&a).withdraw()).count(),
            10
        );
        assert_eq!(
            (0..100).filter(|_| shared.origin(&b).withdraw()).count(),
            10
        );
    }

    #[test]
    fn default_ports_are_filled_in() {
        let explicit: http::Uri = "https://h:443/".parse().unwrap();
        let implicit: http::Uri = "https://h/".parse().unwrap();
        assert_eq!(
            Origin::of_uri(&explicit).key(),
            Origin::of_uri(&implicit).key()
        );
        let relative: http::Uri = "/v1/agents".parse().unwrap();
        assert_eq!(Origin::of_uri(&relative), Origin::default());
    }

    #[test]
    fn origins_compare_display_and_hash_without_case_user_info_or_default_ports() {
        let a: http::Uri = "https://user:secret@API.Example:443/v1?key=k"
            .parse()
            .unwrap();
        let b: http::Uri = "https://api.example/".parse().unwrap();
        let c: http::Uri = "https://api.example:/".parse().unwrap();
        let (a, b, c) = (Origin::of_uri(&a), Origin::of_uri(&b), Origin::of_uri(&c));
        assert_eq!(a, b);
        assert_eq!(b, c, "an empty port is the default port");
        assert_eq!(a.key(), c.key());
        assert_eq!(a.to_string(), "https://api.example:443");
        assert!(!format!("{a} {a:?}").contains("secret"));
        assert_eq!((a.scheme(), a.port()), (Some("https"), Some(443)));
        let other: http::Uri = "https://api.example:8443/".parse().unwrap();
        assert_ne!(a, Origin::of_uri(&other));
    }

    #[test]
    fn uri_and_parts_give_the_same_origin() {
        for (uri, scheme, host, port) in [
            ("https://API.example/v1", "https", "api.example", None),
            (
                "http://user:secret@h.example:8080/x",
                "http",
                "h.example",
                Some(8080),
            ),
            ("http://[::1]:9000/", "http", "[::1]", Some(9000)),
            ("http://[::1]/", "http", "[::1]", None),
        ] {
            let parsed: http::Uri = uri.parse().unwrap();
            let of_uri = Origin::of_uri(&parsed);
            let from_parts = Origin::new(Some(scheme), Some(host), port);
            assert_eq!(of_uri.key(), from_parts.key(), "{uri}");
        }
        let a: http::Uri = "http://h.example:8080/".parse().unwrap();
        let b: http::Uri = "http://h.example:8081/".parse().unwrap();
        assert_ne!(Origin::of_uri(&a).key(), Origin::of_uri(&b).key());
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_origin_bound_no_cooldown_crosses_origins() {
        let store = InProcess::new(None, true, None);
        let far = Instant::now() + Duration::from_secs(3600);
        let hosts: Vec<String> = (0..MAX_ORIGINS + 2).map(|i| format!("h{i}")).collect();
        for h in &hosts {
            store
                .origin(&Origin::new(Some("http"), Some(h), None))
                .refuse_until(far);
        }
        let fresh = store.origin(&Origin::new(Some("http"), Some("fresh.example"), None));
        assert_eq!(fresh.refusal_remaining(Instant::now()), None);
        assert_eq!(fresh.cooldown_remaining(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_origin_bound_idle_origins_are_forgotten_and_new_ones_kept() {
        let store = InProcess::new(None, true, None);
        let hosts: Vec<String> = (0..MAX_ORIGINS).map(|i| format!("h{i}")).collect();
        for h in &hosts {
            drop(store.origin(&Origin::new(Some("http"), Some(h), None)));
        }
        let late = Origin::new(Some("http"), Some("late.example"), None);
        store
            .origin(&late)
            .cool_down_until(Instant::now() + Duration::from_secs(5));
        assert_eq!(
            store.origin(&late).cooldown_remaining(Instant::now()),
            Some(Duration::from_secs(5)),
            "the late origin's limits are kept, not made anew for each request"
        );
        assert!(store.origins.load().len() <= MAX_ORIGINS);
    }

    #[tokio::test(start_paused = true)]
    async fn many_origins_stay_bounded() {
        let shared = SharedLimits::new(&RetryPolicy::default());
        let store = InProcess::new(None, true, None);
        let hosts: Vec<String> = (0..2 * MAX_ORIGINS).map(|i| format!("h{i}")).collect();
        for h in &hosts {
            let _ = store.origin(&Origin::new(Some("http"), Some(h), None));
        }
        assert!(store.origins.load().len() <= MAX_ORIGINS);
        drop(shared);
    }
}
