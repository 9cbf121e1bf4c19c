//! The redis crate's `Client` for a URL: `redis://`, or `rediss://` (feature `redis-tls`)
//! with the system's roots or a private CA's.
//!
//! TLS is rustls with ring. The roots are the system's (`rustls-native-certs`): the ones the
//! application's HTTPS client already trusts (reqwest's default verifier uses them too), kept
//! up to date by the system, no bundle of our own to ship and refresh, and a private CA can be
//! added without code through `SSL_CERT_FILE`. A Redis whose certificate a private CA signed
//! can also be given that CA alone ([`RedisLimitsBuilder::tls_root_certificate`]).
//!
//! [`RedisLimitsBuilder::tls_root_certificate`]: super::RedisLimitsBuilder::tls_root_certificate

use redis::{Client, ConnectionAddr, IntoConnectionInfo};

use super::builder::ErrorKind;

/// The client for `url`, trusting only `root` (PEM) if given.
pub(crate) fn client(url: &str, root: Option<&[u8]>) -> Result<Client, ErrorKind> {
    let tls = is_tls(url);
    if tls && !cfg!(feature = "redis-tls") {
        return Err(ErrorKind::TlsFeature);
    }
    let info = url.into_connection_info().map_err(ErrorKind::Url)?;
    match info.addr() {
        ConnectionAddr::TcpTls { insecure: true, .. } => return Err(ErrorKind::Insecure),
        ConnectionAddr::TcpTls { .. } => crypto_provider(),
        _ if root.is_some() => return Err(ErrorKind::RootWithoutTls),
        _ => {}
    }
    match root {
        None => Client::open(info).map_err(ErrorKind::Url),
        #[cfg(feature = "redis-tls")]
        Some(pem) => with_root(info, pem),
        #[cfg(not(feature = "redis-tls"))]
        Some(_) => Err(ErrorKind::TlsFeature),
    }
}

/// Whether `url` asks for TLS (`rediss://`, or `valkeys://` which the redis crate also
/// takes).
fn is_tls(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
}

#[cfg(feature = "redis-tls")]
fn with_root(info: redis::ConnectionInfo, pem: &[u8]) -> Result<Client, ErrorKind> {
    check_pem(pem)?;
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    };
    Client::build_with_tls(info, certs).map_err(ErrorKind::Url)
}

/// At least one certificate, and every PEM block a certificate that parses.
#[cfg(feature = "redis-tls")]
pub(crate) fn check_pem(pem: &[u8]) -> Result<(), ErrorKind> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|_| ErrorKind::BadRootCertificate)?;
        n += 1;
    }
    if n == 0 {
        return Err(ErrorKind::BadRootCertificate);
    }
    Ok(())
}

/// rustls needs a process-wide crypto provider; it picks one by itself only when exactly
/// one of its providers is compiled in. An application that also links aws-lc-rs (reqwest's
/// default TLS does) would then panic on the first TLS connection: so, if the process set
/// none, ring's is installed as the process default here (one the application installs
/// before this is kept).
fn crypto_provider() {
    #[cfg(feature = "redis-tls")]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one provider is set either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_the_scheme_only() {
        assert!(is_tls("rediss://h:6380/0"));
        assert!(is_tls("REDISS://h"));
        assert!(is_tls("valkeys://h"));
        assert!(!is_tls("redis://rediss:6379"));
        assert!(!is_tls("redis+unix:///tmp/r.sock"));
    }

    #[test]
    fn a_root_certificate_needs_tls() {
        let err = client("redis://127.0.0.1:6379", Some(b"x")).unwrap_err();
        assert!(matches!(err, ErrorKind::RootWithoutTls));
    }

    #[cfg(feature = "redis-tls")]
    #[test]
    fn insecure_and_bad_pems_are_refused() {
        let err = client("rediss://127.0.0.1:6380/#insecure", None).unwrap_err();
        assert!(matches!(err, ErrorKind::Insecure));
        for pem in [
            &b""[..],
            b"not a pem",
            b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        ] {
            let err = client("rediss://127.0.0.1:6380", Some(pem)).unwrap_err();
            assert!(matches!(err, ErrorKind::BadRootCertificate));
        }
        assert!(client("rediss://user:pw@127.0.0.1:6380/0", None).is_ok());
    }

    #[cfg(not(feature = "redis-tls"))]
    #[test]
    fn tls_needs_the_feature() {
        let err = client("rediss://127.0.0.1:6380", None).unwrap_err();
        assert!(matches!(err, ErrorKind::TlsFeature));
    }
}
