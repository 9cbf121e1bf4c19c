//! The Redis names of one scope: keys, the channel, and origins written into them.

use std::sync::Arc;

use tokio::time::Instant;

use crate::limits::Origin;

/// Every name a `RedisStore` uses, all under the hash tag
/// `{<prefix>:<scope>}` so that a scope's keys live in one Redis Cluster slot:
///
/// - `{p:s}:pace:<origin>`: the pacing GCRA's theoretical arrival time, in µs of Redis time;
/// - `{p:s}:freed:<origin>`: slots given back after a later one was reserved, for the next
///   reservations to take first (a sorted set of times, in µs of Redis time);
/// - `{p:s}:rate:<origin>`: the rate the fleet learned (`Pacing::adaptive`), a hash;
/// - `{p:s}:cooldown:<origin>`, `{p:s}:refusal:<origin>`: present while the origin is held
///   back or refused, expiring with it (`PX`);
/// - `{p:s}:cooldowns`: the set of origins that had a cooldown or refusal, so that a
///   replica that (re)connects can read them all in one script;
/// - `{p:s}:learned`: the origins the fleet paces at a learned rate, for a replica that
///   (re)subscribes;
/// - `{p:s}:replicas`: the replicas alive (a sorted set of ids, scored by when each
///   expires without a new heartbeat);
/// - `{p:s}:events`: the pub/sub channel on which replicas announce new cooldowns, and
///   that the fleet paces an origin at a learned rate.
#[derive(Clone, Debug)]
pub(crate) struct Names {
    base: String,
    pub(crate) index: String,
    pub(crate) channel: String,
    pub(crate) replicas: String,
    pub(crate) learned: String,
}

impl Names {
    pub(crate) fn new(prefix: &str, scope: &str) -> Self {
        let base = format!("{{{prefix}:{scope}}}:");
        Names {
            index: format!("{base}cooldowns"),
            channel: format!("{base}events"),
            replicas: format!("{base}replicas"),
            learned: format!("{base}learned"),
            base,
        }
    }

    pub(crate) fn pace(&self, origin: &str) -> String {
        format!("{}pace:{origin}", self.base)
    }

    pub(crate) fn freed(&self, origin: &str) -> String {
        format!("{}freed:{origin}", self.base)
    }

    pub(crate) fn rate(&self, origin: &str) -> String {
        format!("{}rate:{origin}", self.base)
    }

    pub(crate) fn cooldown(&self, kind: Kind, origin: &str) -> String {
        format!("{}{}:{origin}", self.base, kind.as_str())
    }
}

/// A cooldown (the policy waits for it) or a refusal (a `Retry-After` above the cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Cooldown,
    Refusal,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Cooldown => "cooldown",
            Kind::Refusal => "refusal",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        match s {
            "cooldown" => Some(Kind::Cooldown),
            "refusal" => Some(Kind::Refusal),
            _ => None,
        }
    }
}

/// A cooldown or refusal of one origin to record in Redis.
#[derive(Debug)]
pub(crate) struct Write {
    pub(crate) kind: Kind,
    pub(crate) origin: Arc<str>,
    pub(crate) until: Instant,
}

/// The origin an [`Origin`]'s `Display` wrote (`scheme://host:port`, lowercase), as the
/// origin again; `None` if it is not of that form. An empty scheme or host is none.
pub(crate) fn parse_origin(s: &str) -> Option<Origin<'_>> {
    let (scheme, rest) = s.split_once("://")?;
    let (host, port) = match rest.rsplit_once(':') {
        // `[::1]` has colons but no port; `[::1]:9000` and `h:80` have one.
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && !host.ends_with(':') =>
        {
            (host, Some(port.parse().ok()?))
        }
        _ => (rest, None),
    };
    fn some(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    Some(Origin::new(some(scheme), some(host), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_written_by_display_parse_back_to_the_same_key() {
        for uri in [
            "https://API.example/v1",
            "http://user:secret@h.example:8080/x",
            "http://[::1]:9000/",
            "http://[::1]/",
            "/relative",
            "ftp://h.example/",
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            let origin = Origin::of_uri(&uri);
            let written = origin.to_string();
            let parsed = parse_origin(&written).unwrap();
            assert_eq!(parsed.key(), origin.key(), "{written}");
        }
        assert!(parse_origin("no scheme").is_none());
        assert!(parse_origin("http://h:99999").is_none());
    }

    #[test]
    fn names_share_one_hash_tag() {
        let n = Names::new("telecho-retry", "key-1");
        assert_eq!(
            n.pace("http://h:80"),
            "{telecho-retry:key-1}:pace:http://h:80"
        );
        assert_eq!(
            n.cooldown(Kind::Refusal, "http://h:80"),
            "{telecho-retry:key-1}:refusal:http://h:80"
        );
        assert_eq!(
            n.rate("http://h:80"),
            "{telecho-retry:key-1}:rate:http://h:80"
        );
        assert_eq!(n.index, "{telecho-retry:key-1}:cooldowns");
        assert_eq!(n.channel, "{telecho-retry:key-1}:events");
    }
}
