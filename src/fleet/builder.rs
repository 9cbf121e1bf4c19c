//! [`RedisLimitsBuilder`] and the error it may return.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::cooldown;
use super::link::Link;
use super::names::Names;
use super::store::{RedisLimits, Settings, Shared, WRITES};
use crate::engine::limits::InProcess;
use crate::limits::SharedLimits;
use crate::policy::RetryPolicy;

/// The default bound of each Redis call on the request path: 50 ms.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(50);

/// The default share of the fleet's pacing rate a replica keeps alone while Redis cannot
/// be reached: 0.25 (four replicas together keep the fleet's rate).
pub const DEFAULT_FALLBACK_SHARE: f64 = 0.25;

/// The default key prefix: `telecho-retry`.
pub const DEFAULT_KEY_PREFIX: &str = "telecho-retry";

/// Settings of a [`RedisLimits`], from [`RedisLimits::builder`].
///
/// The URL may carry a user name and password (`redis://user:password@host:6379/0`); they
/// never appear in `Debug` output, errors or logs.
#[derive(Clone)]
pub struct RedisLimitsBuilder {
    url: String,
    scope: String,
    call_timeout: Duration,
    fallback_share: f64,
    prefix: String,
}

impl RedisLimits {
    /// Limits shared through the Redis at `url` by every replica that uses the same
    /// `scope`: a name you choose, one per API key (the key's limits are what the fleet
    /// shares). The scope is a name, never the API key itself: it is written into Redis
    /// keys. See the [`RedisLimits`](crate::limits::RedisLimits) docs.
    pub fn builder(url: impl Into<String>, scope: impl Into<String>) -> RedisLimitsBuilder {
        RedisLimitsBuilder {
            url: url.into(),
            scope: scope.into(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            fallback_share: DEFAULT_FALLBACK_SHARE,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }
}

impl RedisLimitsBuilder {
    /// The bound of each Redis call a request waits on (a paced attempt's round trip):
    /// past it the attempt is paced in process. At least 1 ms.
    ///
    /// # Default
    ///
    /// [`DEFAULT_CALL_TIMEOUT`], 50 ms: loopback or LAN Redis answers in well under a
    /// millisecond, so this only bounds a Redis that is down or stalled.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The share of the policy's pacing rate this replica keeps alone while Redis cannot be
    /// reached (see [`Pacing::scaled`](crate::limits::Pacing::scaled)); clamped to
    /// 0.001–1, NaN counts as 1. Set it to about 1 / the number of replicas.
    ///
    /// # Default
    ///
    /// [`DEFAULT_FALLBACK_SHARE`], 0.25.
    pub fn fallback_share(mut self, share: f64) -> Self {
        self.fallback_share = if share.is_nan() {
            1.0
        } else {
            share.clamp(0.001, 1.0)
        };
        self
    }

    /// The first part of every key's hash tag: `{<prefix>:<scope>}:…`.
    ///
    /// # Default
    ///
    /// [`DEFAULT_KEY_PREFIX`], `telecho-retry`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The limits, ready to hand to
    /// [`TelEchoRetry::with_limits`](crate::TelEchoRetry::with_limits). The retry budget,
    /// the shared cooldown's switch and the pacing are the `policy`'s.
    ///
    /// Call it within a tokio runtime: it spawns the background tasks (they end when the
    /// limits are dropped). It does not connect: Redis being down is no error (requests then
    /// use the in-process limits until it answers).
    ///
    /// # Errors
    ///
    /// A URL the redis crate does not accept, an empty scope, a scope that looks like a
    /// TelEcho API key (`tel_sk_…`), or no tokio runtime.
    pub fn build(self, policy: &RetryPolicy) -> Result<SharedLimits, RedisLimitsError> {
        self.build_store(policy).map(SharedLimits::from_store)
    }

    /// Like [`build`](Self::build), as a [`RedisLimits`], for callers who keep a clone to
    /// watch it ([`RedisLimits::is_reachable`], [`RedisLimits::fallbacks`]); hand it to
    /// [`SharedLimits::from_store`].
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_store(self, policy: &RetryPolicy) -> Result<RedisLimits, RedisLimitsError> {
        if self.scope.is_empty() {
            return Err(RedisLimitsError(ErrorKind::EmptyScope));
        }
        if self.scope.starts_with("tel_sk_") {
            return Err(RedisLimitsError(ErrorKind::ScopeIsAKey));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| RedisLimitsError(ErrorKind::NoRuntime))?;
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| RedisLimitsError(ErrorKind::Url(e)))?;
        let pacing = policy.pacing();
        // The in-process context the lazy connection needs is the runtime's.
        let _entered = runtime.enter();
        let link = Link::new(
            client,
            Names::new(&self.prefix, &self.scope),
            self.call_timeout,
            pacing,
        )
        .map_err(|e| RedisLimitsError(ErrorKind::Url(e)))?;
        let link = Arc::new(link);
        let (writes, receiver) = mpsc::channel(WRITES);
        let settings = Settings {
            scope: self.scope,
            prefix: self.prefix,
            fallback_share: self.fallback_share,
            cooldown: policy.shared_cooldown(),
            fallback_pacing: pacing.map(|p| p.scaled(self.fallback_share)),
        };
        // The budget stays per process; the cooldown is kept here and shared by the tasks;
        // the pacing is Redis' (the fallback pacer lives with each origin).
        let local = InProcess::new(policy.budget(), policy.shared_cooldown(), None);
        let shared = Arc::new(Shared::new(local, Arc::clone(&link), writes, settings));
        let tasks = vec![
            runtime
                .spawn(cooldown::writer(Arc::clone(&shared), receiver))
                .abort_handle(),
            runtime
                .spawn(cooldown::subscriber(Arc::clone(&shared)))
                .abort_handle(),
            runtime.spawn(link.probe()).abort_handle(),
        ];
        Ok(RedisLimits::from_parts(shared, tasks))
    }
}

impl fmt::Debug for RedisLimitsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisLimitsBuilder")
            .field("scope", &self.scope)
            .field("call_timeout", &self.call_timeout)
            .field("fallback_share", &self.fallback_share)
            .field("key_prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why [`RedisLimitsBuilder::build`] failed: the settings, never Redis being down.
pub struct RedisLimitsError(ErrorKind);

enum ErrorKind {
    Url(redis::RedisError),
    EmptyScope,
    ScopeIsAKey,
    NoRuntime,
}

impl fmt::Display for RedisLimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            // The URL is not repeated: it may carry a password.
            ErrorKind::Url(_) => "invalid Redis URL",
            ErrorKind::EmptyScope => "the scope of RedisLimits is empty",
            ErrorKind::ScopeIsAKey => {
                "the scope of RedisLimits looks like an API key: give a name, not the key"
            }
            ErrorKind::NoRuntime => "RedisLimits must be built within a tokio runtime",
        })
    }
}

impl fmt::Debug for RedisLimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisLimitsError")
            .field(&self.to_string())
            .finish()
    }
}

impl Error for RedisLimitsError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.0 {
            // The redis crate's parse errors name what is wrong, never the URL's parts.
            ErrorKind::Url(e) => Some(e),
            _ => None,
        }
    }
}
