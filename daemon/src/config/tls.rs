//! `http.tls`, typed: zot's `cert`, `key` and `cacert` (mutual TLS when set).
//!
//! Rules:
//! - `cert` and `key` go together (one without the other is an error); a section with
//!   neither serves plain HTTP with a warning, as zot serves it. The files are read when the daemon builds its TLS
//!   setup (runtime/tls.rs), before it listens, and again on every reload; `berth serve`
//!   refuses to start when they are missing or do not hold a certificate chain and its key
//!   (the config alone stays portable: zot's examples name files of other machines).
//! - `cacert` turns on client-certificate verification: every client must present a
//!   certificate that chains to one of its certificates (zot's mTLS).

use std::path::PathBuf;

use super::walk::{Ctx, Section};

/// `http.tls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// `cert`: the server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// `key`: its private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// `cacert`: CA certificates (PEM) client certificates must chain to; `None` = no client
    /// certificates asked for.
    pub cacert: Option<PathBuf>,
}

/// `http.tls`: `Some(None)` when absent, `None` when invalid (errors recorded in `ctx`).
pub(crate) fn tls(ctx: &mut Ctx, http: &Section<'_>) -> Option<Option<TlsConfig>> {
    let Some(value) = http.raw("tls") else {
        return Some(None);
    };
    let path = http.path_of("tls");
    let section = Section::read(ctx, &path, value, &["cert", "key", "cacert"], &[])?;
    let mut file = |key: &str, required: bool| -> Result<Option<PathBuf>, ()> {
        let key_path = section.path_of(key);
        let Some(text) = section.string(ctx, key) else {
            if section.has(key) {
                return Err(());
            }
            if required {
                ctx.error(&key_path, "required with http.tls");
                return Err(());
            }
            return Ok(None);
        };
        if text.is_empty() {
            ctx.error(&key_path, "must name a file");
            return Err(());
        }
        Ok(Some(PathBuf::from(text)))
    };
    if !section.has("cert") && !section.has("key") {
        // zot serves plain HTTP unless both are set.
        ctx.warn(
            &path,
            "no cert and key: berth serves plain HTTP, as zot does",
        );
        return Some(None);
    }
    let cert = file("cert", true);
    let key = file("key", true);
    let cacert = file("cacert", false);
    match (cert, key, cacert) {
        (Ok(Some(cert)), Ok(Some(key)), Ok(cacert)) => Some(Some(TlsConfig { cert, key, cacert })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    fn with_tls(tls: &str) -> String {
        format!(r#"{{"storage": {{"rootDirectory": "/d"}}, "http": {{"tls": {tls}}}}}"#)
    }

    #[test]
    fn cert_and_key_are_both_required() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("server.crt");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, "c").unwrap();
        std::fs::write(&key, "k").unwrap();
        let good = with_tls(&format!(r#"{{"cert": {cert:?}, "key": {key:?}}}"#));
        let (config, warnings) = parse_str(&good).expect("valid");
        let tls = config.http.tls.expect("tls on");
        assert_eq!(
            (tls.cert, tls.key, tls.cacert),
            (cert.clone(), key.clone(), None)
        );
        assert!(
            warnings.iter().all(|w| !w.key_path.starts_with("http.tls")),
            "{warnings:?}"
        );

        let (config, warnings) = parse_str(&with_tls("{}")).expect("an empty section loads");
        assert!(config.http.tls.is_none());
        assert!(
            warnings.iter().any(|w| w.key_path == "http.tls"),
            "{warnings:?}"
        );
        for (tls, path) in [
            (format!(r#"{{"key": {key:?}}}"#), "http.tls.cert"),
            (format!(r#"{{"cert": {cert:?}}}"#), "http.tls.key"),
            (
                format!(r#"{{"cert": {cert:?}, "key": ""}}"#),
                "http.tls.key",
            ),
            (
                format!(r#"{{"cert": {cert:?}, "key": {key:?}, "cacert": 7}}"#),
                "http.tls.cacert",
            ),
            (
                format!(r#"{{"cert": {cert:?}, "key": {key:?}, "ca": "x"}}"#),
                "http.tls.ca",
            ),
        ] {
            let errors = parse_str(&with_tls(&tls)).expect_err(&tls);
            assert!(errors.to_string().contains(path), "{tls}: {errors}");
        }
    }
}
