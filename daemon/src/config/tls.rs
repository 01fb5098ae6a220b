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

/// One part of a verified client certificate that can name the caller (zot's
/// `http.auth.mtls.identityAttributes`; names case-insensitive, with zot's aliases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityAttribute {
    /// `CommonName` / `CN`: the subject's common name (the default).
    CommonName,
    /// `Subject` / `DN`: the whole subject distinguished name, as Go prints a pkix.Name.
    Subject,
    /// `Email` / `rfc822name`: an email subject alternative name.
    Email,
    /// `URI` / `URL`: a URI subject alternative name, through `uriSanPattern` when set.
    Uri,
    /// `DNSName` / `DNS`: a DNS subject alternative name.
    DnsName,
}

impl IdentityAttribute {
    fn parse(name: &str) -> Option<IdentityAttribute> {
        Some(match name.to_ascii_lowercase().as_str() {
            "commonname" | "cn" => IdentityAttribute::CommonName,
            "subject" | "dn" => IdentityAttribute::Subject,
            "email" | "rfc822name" => IdentityAttribute::Email,
            "uri" | "url" => IdentityAttribute::Uri,
            "dnsname" | "dns" => IdentityAttribute::DnsName,
            _ => return None,
        })
    }
}

/// `http.auth.mtls`: which part of a verified client certificate is the user. The first
/// attribute of `identity_attributes` that the certificate has wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtlsConfig {
    /// Tried in order; default `[CommonName]`.
    pub identity_attributes: Vec<IdentityAttribute>,
    /// `uriSanPattern`: a regular expression the URI must match; its first capture group (or
    /// the whole URI without one) is the user.
    pub uri_san_pattern: Option<String>,
    /// `uriSanIndex`, `dnsSanIndex`, `emailSanIndex`: which SAN of that kind (0-based).
    pub uri_san_index: usize,
    pub dns_san_index: usize,
    pub email_san_index: usize,
}

impl Default for MtlsConfig {
    fn default() -> MtlsConfig {
        MtlsConfig {
            identity_attributes: vec![IdentityAttribute::CommonName],
            uri_san_pattern: None,
            uri_san_index: 0,
            dns_san_index: 0,
            email_san_index: 0,
        }
    }
}

/// Largest SAN index accepted (a certificate with more SANs than this is not a client's).
const MAX_SAN_INDEX: u64 = 1024;

/// `http.auth.mtls` within `http.auth`: `Some(None)` when absent, `None` when invalid.
pub(crate) fn mtls(ctx: &mut Ctx, auth: &Section<'_>) -> Option<Option<MtlsConfig>> {
    let Some(value) = auth.raw("mtls") else {
        return Some(None);
    };
    let section = Section::read(
        ctx,
        &auth.path_of("mtls"),
        value,
        &[
            "identityAttributes",
            "uriSanPattern",
            "uriSanIndex",
            "dnsSanIndex",
            "emailSanIndex",
        ],
        &[],
    )?;
    let mut config = MtlsConfig::default();
    let mut ok = true;
    if section.has("identityAttributes") {
        let names = section.strings(ctx, "identityAttributes")?;
        let mut attributes = Vec::new();
        for name in &names {
            match IdentityAttribute::parse(name) {
                Some(attribute) => attributes.push(attribute),
                None => {
                    ctx.error(
                        &section.path_of("identityAttributes"),
                        format!(
                            "unknown attribute {name:?} (CommonName, Subject, Email, URI, DNSName)"
                        ),
                    );
                    ok = false;
                }
            }
        }
        if attributes.is_empty() && ok {
            ctx.error(
                &section.path_of("identityAttributes"),
                "must name at least one attribute",
            );
            ok = false;
        }
        config.identity_attributes = attributes;
    }
    if section.has("uriSanPattern") {
        match section.string(ctx, "uriSanPattern") {
            Some(pattern) => match regex::Regex::new(&pattern) {
                Ok(_) => config.uri_san_pattern = Some(pattern),
                Err(error) => {
                    ctx.error(&section.path_of("uriSanPattern"), error.to_string());
                    ok = false;
                }
            },
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("uriSanIndex", &mut config.uri_san_index),
        ("dnsSanIndex", &mut config.dns_san_index),
        ("emailSanIndex", &mut config.email_san_index),
    ] {
        if section.has(key) {
            match section.integer(ctx, key, 0, MAX_SAN_INDEX) {
                Some(index) => *slot = index as usize,
                None => ok = false,
            }
        }
    }
    ok.then_some(Some(config))
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
