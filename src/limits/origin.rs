//! [`Origin`]: scheme, host and port of a request's URL, the unit limits are kept by.

use std::fmt;
use std::hash::Hasher;

use rustc_hash::FxHasher;

/// An origin: scheme, host and port of a request's URL, borrowed from the request. Retry
/// budgets, rate-limit cooldowns and pacing are kept per origin (see [`Limits`](crate::limits::Limits)).
/// A request without an absolute URL (`/path`, as in tests over `tower::service_fn`)
/// has the empty origin, shared by all such requests.
///
/// Two origins are equal when their schemes and hosts are equal without regard to ASCII
/// case and their ports are equal; `Display` writes `scheme://host:port` in lowercase (no
/// user info, path or query: fit for a store's key).
// Public (the engine's public-but-unreachable request trait names it), unreachable.
#[allow(unreachable_pub)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<u16>,
}

#[allow(unreachable_pub)]
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
