//! `http.auth.bearer`, typed: zot's `realm`, `service` and `cert` (the Docker/Distribution
//! token protocol: an external token server signs JWTs, berth verifies them).
//!
//! Rules:
//! - `realm` (the token server's URL, absolute http or https), `service` (the `aud` tokens
//!   must carry) and `cert` (a PEM certificate or public key that verifies the tokens) are
//!   all required and non-empty.
//! - The `cert` file is read when the config loads, so `berth verify` and `berth serve` refuse
//!   a file that holds no usable key (auth/bearer.rs says which keys are usable).
//! - zot's workload-identity variants (`oidc`, `awsSecretsManager`, `upstreamTokenEndpoint`)
//!   are accepted with a warning that says they are ignored.

use std::path::PathBuf;

use super::walk::{Ctx, Section};

const NOT_YET: &str = "not implemented in this build; ignored (tokens are verified with `cert`)";

/// `http.auth.bearer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BearerConfig {
    /// `realm`: the token server's URL, sent in every challenge.
    pub realm: String,
    /// `service`: the audience tokens are issued for, sent in every challenge.
    pub service: String,
    /// `cert`: PEM certificate(s) or public key(s) whose key signs the tokens.
    pub cert: PathBuf,
}

/// `http.auth.bearer` within `http.auth`: `Some(None)` when absent, `None` when invalid.
pub(crate) fn bearer(ctx: &mut Ctx, auth: &Section<'_>) -> Option<Option<BearerConfig>> {
    let Some(value) = auth.raw("bearer") else {
        return Some(None);
    };
    let section = Section::read(
        ctx,
        &auth.path_of("bearer"),
        value,
        &["realm", "service", "cert"],
        &[
            ("oidc", NOT_YET),
            ("awsSecretsManager", NOT_YET),
            ("upstreamTokenEndpoint", NOT_YET),
        ],
    )?;
    let mut required = |key: &str, what: &str| -> Option<String> {
        let key_path = section.path_of(key);
        match section.string(ctx, key) {
            Some(text) if text.trim().is_empty() => {
                ctx.error(&key_path, "must not be empty");
                None
            }
            Some(text) => Some(text),
            None => {
                if !section.has(key) {
                    ctx.error(&key_path, format!("required: {what}"));
                }
                None
            }
        }
    };
    let realm = required("realm", "the token server's URL");
    let service = required("service", "the audience the token server issues tokens for");
    let cert = required("cert", "the certificate or public key that verifies tokens");
    let (realm, service, cert) = (realm?, service?, cert?);
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|scheme| realm.len() > scheme.len() && realm.starts_with(scheme));
    if !scheme_ok || realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
        ctx.error(
            &section.path_of("realm"),
            "must be an absolute http:// or https:// URL without quotes or backslashes",
        );
        return None;
    }
    if service.contains(['"', '\\']) || service.chars().any(char::is_control) {
        ctx.error(
            &section.path_of("service"),
            "must not contain quotes, backslashes or control characters",
        );
        return None;
    }
    let cert = PathBuf::from(cert);
    if let Err(error) = crate::auth::bearer::TokenKeys::load(&cert) {
        ctx.error(&section.path_of("cert"), error);
        return None;
    }
    Some(Some(BearerConfig {
        realm,
        service,
        cert,
    }))
}
