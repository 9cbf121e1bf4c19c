//! [`RedisLimitsBuilder`] and the error it may return.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::conn::{Connector, Target};
use super::cooldown;
use super::link::Link;
use super::names::Names;
use super::replicas;
use super::store::{FleetState, RedisStore, Settings, WRITES};
use crate::limits::{Limits, LimitsBuilder, LocalStore};

/// The default bound of each Redis call on the request path: 50 ms.
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(50);

/// The share of the fleet's pacing rate a replica keeps alone while Redis cannot be
/// reached, before it has counted the replicas alive: 0.25.
pub(crate) const DEFAULT_FALLBACK_SHARE: f64 = 0.25;

/// The default key prefix: `telecho-retry`.
pub(crate) const DEFAULT_KEY_PREFIX: &str = "telecho-retry";

/// [`Limits`] shared by every replica of a service through Redis, from
/// [`LimitsBuilder::redis`]: a 429's cooldown, seen by one replica, holds back all of them,
/// and [`Pacing`](crate::limits::Pacing) keeps one rate for the whole fleet.
///
/// ```no_run
/// use telecho_retry::limits::{Limits, Pacing};
/// use telecho_retry::TelEchoRetry;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The key allows 600 requests a minute, for all replicas together.
/// let limits = Limits::builder()
///     .pacing(Pacing::per_minute(600))
///     .redis("redis://127.0.0.1:6379", "telecho-key-1")
///     .build()?; // within a tokio runtime; Redis may be down
/// let retry = TelEchoRetry::default().with_limits(limits);
/// # let _ = retry; Ok(()) }
/// ```
///
/// The URL may carry a user name and password (`redis://user:password@host:6379/0`); they
/// never appear in `Debug` output, errors or logs. With feature `redis-tls`, a `rediss://`
/// URL connects by TLS, verified against the system's root certificates (or a private CA's:
/// [`tls_root_certificate`](Self::tls_root_certificate)). How the store behaves, and when
/// Redis cannot be reached, is in `docs/fleet.md`.
#[derive(Clone)]
pub struct RedisLimitsBuilder {
    limits: LimitsBuilder,
    target: Target,
    scope: String,
    call_timeout: Duration,
    /// `None`: one over the replicas alive.
    fallback_share: Option<f64>,
    prefix: String,
    /// The only root certificates a `rediss://` connection trusts (PEM), if set.
    #[cfg(feature = "redis-tls")]
    root_certificate: Option<Vec<u8>>,
}

impl RedisLimitsBuilder {
    /// Limits shared through the Redis at `url` by every replica that uses the same
    /// `scope`: a name you choose, one per API key (the key's limits are what the fleet
    /// shares). The scope is a name, never the API key itself: it is written into Redis
    /// keys.
    pub(crate) fn new(limits: LimitsBuilder, target: Target, scope: String) -> RedisLimitsBuilder {
        RedisLimitsBuilder {
            limits,
            target,
            scope,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            fallback_share: None,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            #[cfg(feature = "redis-tls")]
            root_certificate: None,
        }
    }

    /// The bound of each Redis call a request waits on (a paced attempt's round trip):
    /// past it the attempt is paced in process. At least 1 ms.
    ///
    /// # Default
    ///
    /// 50 ms: loopback or LAN Redis answers in well under a
    /// millisecond, so this only bounds a Redis that is down or stalled.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Fixes the share of the fleet's pacing rate this replica keeps alone while Redis
    /// cannot be reached (its rate and its burst); clamped to 0.001–1, NaN counts as 1.
    ///
    /// # Default
    ///
    /// One over the replicas alive: each replica counts itself in Redis every second, and
    /// one that stops drops out of the count within 3 s. While Redis cannot be reached the
    /// last count holds; before the first count, 0.25. At a learned rate and at a fixed
    /// [`Pacing`] alike. A replica whose share is fixed is still counted by the others.
    ///
    /// [`Pacing`]: crate::limits::Pacing
    pub fn fallback_share(mut self, share: f64) -> Self {
        self.fallback_share = Some(if share.is_nan() {
            1.0
        } else {
            share.clamp(0.001, 1.0)
        });
        self
    }

    /// The first part of every key's hash tag: `{<prefix>:<scope>}:…` (no `{` or `}`).
    ///
    /// # Default
    ///
    /// `telecho-retry`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Trusts only the CA certificate(s) in `pem` for the `rediss://` connection, instead
    /// of the system's roots: for a Redis whose certificate a private CA signed (feature
    /// `redis-tls`).
    ///
    /// The contract:
    ///
    /// - `pem` holds one or more `-----BEGIN CERTIFICATE-----` blocks; they replace the
    ///   system's roots (they are not added to them).
    /// - The server's certificate must chain to one of them and name the URL's host (a DNS
    ///   name, or an IP address in its subject alternative names): the host name is always
    ///   checked.
    /// - [`build`](Self::build) fails if the PEM holds no certificate or one that does not
    ///   parse, or if the URL is not `rediss://` (a CA for a plain connection would be
    ///   ignored).
    /// - A CA that did not sign the server's certificate is no build error: every
    ///   handshake fails, so the store counts as unreachable
    ///   ([`Limits::is_reachable`](crate::limits::Limits::is_reachable) is false) and
    ///   requests use in-process limits, as when Redis is down (each fallback counted and
    ///   logged).
    ///
    /// The system's roots can also be extended without code: the variable `SSL_CERT_FILE`
    /// names a PEM file read in their place.
    ///
    /// # Default
    ///
    /// The system's root certificates.
    ///
    /// ```no_run
    /// use telecho_retry::limits::{Limits, Pacing};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/telecho/redis-ca.pem")?;
    /// let limits = Limits::builder()
    ///     .pacing(Pacing::per_minute(600))
    ///     .redis("rediss://:password@redis.internal:6380", "telecho-key-1")
    ///     .tls_root_certificate(ca)
    ///     .build()?;
    /// # let _ = limits; Ok(()) }
    /// ```
    #[cfg(feature = "redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate = Some(pem.into());
        self
    }

    /// The limits, ready to hand to
    /// [`TelEchoRetry::with_limits`](crate::TelEchoRetry::with_limits).
    ///
    /// Call it within a tokio runtime with its time driver enabled: it spawns the
    /// background tasks (they end when the last clone of the limits is dropped). It does
    /// not connect: Redis being down is no error (requests then use in-process limits
    /// until it answers).
    ///
    /// # Errors
    ///
    /// A URL the redis crate does not accept (for a cluster: any node's, no node, or
    /// nodes with different schemes or passwords), a `rediss://` URL without feature
    /// `redis-tls`, one that ends in `#insecure` (certificates are always verified), a
    /// root certificate that does not parse or with a plain URL, an empty scope, a scope
    /// that contains what looks like a TelEcho API key (`tel_sk_` in any case), a scope or
    /// key prefix with `{` or `}` (they would break the keys' hash tag), or no tokio runtime.
    pub fn build(self) -> Result<Limits, RedisLimitsError> {
        if self.scope.is_empty() {
            return Err(RedisLimitsError(ErrorKind::EmptyScope));
        }
        if self.scope.to_ascii_lowercase().contains("tel_sk_") {
            return Err(RedisLimitsError(ErrorKind::ScopeIsAKey));
        }
        if [&self.scope, &self.prefix]
            .iter()
            .any(|s| s.contains(['{', '}']))
        {
            return Err(RedisLimitsError(ErrorKind::Brace));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| RedisLimitsError(ErrorKind::NoRuntime))?;
        #[cfg(feature = "redis-tls")]
        let root = self.root_certificate.as_deref();
        #[cfg(not(feature = "redis-tls"))]
        let root = None;
        let connector = Connector::new(
            &self.target,
            root,
            Link::connect_timeout(self.call_timeout),
            Link::background_timeout(self.call_timeout),
        )
        .map_err(RedisLimitsError)?;
        let pacing = self.limits.pacing;
        // The in-process context the lazy connection needs is the runtime's.
        let _entered = runtime.enter();
        let link = Link::new(
            connector,
            Names::new(&self.prefix, &self.scope),
            self.call_timeout,
            pacing,
            runtime.clone(),
        )
        .map_err(|e| RedisLimitsError(ErrorKind::Url(e)))?;
        let share = self.fallback_share.unwrap_or(DEFAULT_FALLBACK_SHARE);
        link.set_fallback_share(share);
        let link = Arc::new(link);
        let (writes, receiver) = mpsc::channel(WRITES);
        let settings = Settings {
            scope: self.scope,
            prefix: self.prefix,
            cooldown: self.limits.cooldown,
        };
        // The budget stays per process; the cooldown is kept here and shared by the tasks;
        // the pacing is Redis', and here at the fallback share while Redis cannot be
        // reached.
        let local = LocalStore::new(
            self.limits.budget,
            self.limits.cooldown,
            pacing.map(|p| p.scaled(share)),
        );
        let shared = Arc::new(FleetState::new(local, Arc::clone(&link), writes, settings));
        let mut tasks = vec![
            runtime
                .spawn(cooldown::writer(Arc::clone(&shared), receiver))
                .abort_handle(),
            runtime
                .spawn(cooldown::subscriber(Arc::clone(&shared)))
                .abort_handle(),
            runtime.spawn(Arc::clone(&link).probe()).abort_handle(),
        ];
        // A replica with a fixed share is counted too: the others' shares count it.
        let follow = self.fallback_share.is_none();
        tasks.push(
            runtime
                .spawn(replicas::heartbeat(link, follow))
                .abort_handle(),
        );
        Ok(Limits {
            learns: pacing.is_some_and(|p| p.is_adaptive()),
            ..Limits::from_store(RedisStore::from_parts(shared, tasks))
        })
    }
}

impl fmt::Debug for RedisLimitsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        let mut d = f.debug_struct("RedisLimitsBuilder");
        match &self.target {
            Target::Single(_) => d.field("cluster", &false),
            #[cfg(feature = "redis-cluster")]
            Target::Cluster(nodes) => d.field("cluster_nodes", &nodes.len()),
        };
        d.field("limits", &self.limits)
            .field("scope", &self.scope)
            .field("call_timeout", &self.call_timeout)
            .field("fallback_share", &self.fallback_share)
            .field("key_prefix", &self.prefix);
        #[cfg(feature = "redis-tls")]
        d.field("tls_root_certificate", &self.root_certificate.is_some());
        d.finish_non_exhaustive()
    }
}

/// Why [`RedisLimitsBuilder::build`] failed: the settings, never Redis being down.
pub struct RedisLimitsError(ErrorKind);

pub(crate) enum ErrorKind {
    Url(redis::RedisError),
    TlsFeature,
    Insecure,
    #[cfg_attr(not(feature = "redis-tls"), allow(dead_code))]
    BadRootCertificate,
    RootWithoutTls,
    #[cfg_attr(not(feature = "redis-cluster"), allow(dead_code))]
    NoNodes,
    EmptyScope,
    ScopeIsAKey,
    Brace,
    NoRuntime,
}

impl fmt::Display for RedisLimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            // The URL is not repeated: it may carry a password.
            ErrorKind::Url(_) => "invalid Redis URL",
            ErrorKind::TlsFeature => "a rediss:// URL needs the feature `redis-tls`",
            ErrorKind::Insecure => {
                "`#insecure` TLS is not supported: give the CA with `tls_root_certificate`"
            }
            ErrorKind::BadRootCertificate => {
                "the root certificate of the Redis limits holds no PEM certificate, or one that does not parse"
            }
            ErrorKind::RootWithoutTls => "a root certificate needs a rediss:// URL",
            ErrorKind::NoNodes => "no Redis Cluster node given",
            ErrorKind::EmptyScope => "the scope of the Redis limits is empty",
            ErrorKind::ScopeIsAKey => {
                "the scope of the Redis limits looks like an API key: give a name, not the key"
            }
            ErrorKind::Brace => {
                "the scope and key prefix of the Redis limits may not contain `{` or `}`"
            }
            ErrorKind::NoRuntime => "Redis limits must be built within a tokio runtime",
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
