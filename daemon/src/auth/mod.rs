//! Who is asking and what they may do: htpasswd Basic authentication (`http.auth`), API keys
//! (`http.auth.apikey`, looked up in the index) and access control (`http.accessControl`,
//! zot's policies). The API layer asks them before a handler runs; none touches storage
//! except to look up a key (and record its use) or learn whether a tag already exists.

pub mod access;
pub mod apikey;
pub mod backoff;
pub mod bearer;
pub mod htpasswd;
pub mod ldap;
pub mod mtls;
pub mod openid;

/// Writes an authentication event to the audit log (`log.audit`, JSON lines beside the
/// mutating requests'): `event` is `login` (a password or directory check that succeeded; a
/// cached login is not checked again and not written again), `login_failed` or `logout`;
/// `method` how (`htpasswd`, `ldap`, `basic` when the failure came before a method was
/// chosen, `ui` for the web UI's session). Never a password.
pub fn audit(event: &str, method: &str, user: &str, peer: Option<std::net::SocketAddr>) {
    let client = peer.map(|peer| peer.to_string()).unwrap_or_default();
    tracing::info!(
        target: crate::runtime::logging::AUDIT_TARGET,
        event,
        method,
        subject = user,
        client = %client,
        "auth"
    );
}
