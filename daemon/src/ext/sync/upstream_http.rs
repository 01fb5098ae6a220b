//! HTTP plumbing of the upstream client: the reqwest client (TLS, redirect policy, a DNS
//! resolver that guards against link-local answers), `Link` header parsing, argument checks
//! and error mapping.
//!
//! Rules (reliability-plan S14): redirects are followed at most MAX_REDIRECTS times and never
//! to a link-local address (169.254.0.0/16, fe80::/10); reqwest drops `Authorization` when a
//! redirect changes host or port; hostnames resolving only to link-local addresses are refused
//! unless they are the configured upstream hosts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH};
use reqwest::Url;

use super::upstream::{UpstreamError, UpstreamOptions, MAX_REDIRECTS};

/// The reqwest client for one upstream; built inside `runtime` so its pool and timers live
/// there.
pub(super) fn build_client(
    options: &UpstreamOptions,
    bases: &[Url],
    runtime: &tokio::runtime::Handle,
) -> Result<reqwest::Client, String> {
    let configured_hosts = bases
        .iter()
        .filter_map(|url| url.host_str().map(str::to_ascii_lowercase))
        .collect();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(options.response_header_timeout)
        .redirect(redirect_policy())
        .dns_resolver(Arc::new(GuardedResolver { configured_hosts }))
        .pool_max_idle_per_host(options.req_concurrent.max(2))
        .danger_accept_invalid_certs(!options.tls_verify);
    if let Some(dir) = &options.cert_dir {
        builder = add_certificates(builder, dir)?;
    }
    let _entered = runtime.enter();
    builder
        .build()
        .map_err(|error| format!("building the HTTP client: {error}"))
}

/// The path and query of the `rel="next"` link, if any; it must stay on the same origin.
pub(super) fn next_link(
    headers: &HeaderMap,
    current: &Url,
) -> Result<Option<String>, UpstreamError> {
    for value in headers.get_all("link") {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let Some((target, params)) = link
                .trim()
                .strip_prefix('<')
                .and_then(|rest| rest.split_once('>'))
            else {
                continue;
            };
            let is_next = params.split(';').any(|param| {
                param.split_once('=').is_some_and(|(key, value)| {
                    key.trim().eq_ignore_ascii_case("rel")
                        && value
                            .trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|rel| rel.eq_ignore_ascii_case("next"))
                })
            });
            if !is_next {
                continue;
            }
            let invalid =
                |message: String| UpstreamError::Protocol(format!("{current}: {message}"));
            let next = current
                .join(target)
                .map_err(|error| invalid(format!("Link {target:?}: {error}")))?;
            if next.origin() != current.origin() {
                return Err(invalid(format!("Link {target:?} leaves the upstream host")));
            }
            if !next.path().starts_with("/v2/") {
                return Err(invalid(format!("Link {target:?} is outside /v2/")));
            }
            return Ok(Some(match next.query() {
                Some(query) => format!("{}?{query}", next.path()),
                None => next.path().to_owned(),
            }));
        }
    }
    Ok(None)
}

pub(super) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// Repository names go into URL paths: only the distribution name grammar's characters.
pub(super) fn check_repo(repo: &str) -> Result<(), UpstreamError> {
    let valid = !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        });
    if valid {
        Ok(())
    } else {
        Err(UpstreamError::Protocol(format!("repository name {repo:?}")))
    }
}

pub(super) fn check_component(what: &str, value: &str) -> Result<(), UpstreamError> {
    let valid = !value.is_empty()
        && value.len() <= 256
        && value.bytes().all(|byte| {
            byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b':' | b'+' | b'=')
        });
    if valid {
        Ok(())
    } else {
        Err(UpstreamError::Protocol(format!("{what} {value:?}")))
    }
}

pub(super) fn host_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    format!("{host}:{}", url.port_or_known_default().unwrap_or(0))
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH.as_str()).and_then(|value| value.trim().parse().ok())
}

pub(super) fn too_large(what: &'static str, limit: u64) -> UpstreamError {
    UpstreamError::TooLarge { what, limit }
}

pub(super) fn sensitive(value: &str) -> HeaderValue {
    let mut value = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

/// Maps a reqwest error; a refusal raised by the redirect policy or the resolver stays one.
pub(super) fn request_error(url: &Url, error: &reqwest::Error) -> UpstreamError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refusal) = current.downcast_ref::<Refusal>() {
            return UpstreamError::Refused(refusal.0.clone());
        }
        source = current.source();
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        message.push_str(": ");
        message.push_str(&current.to_string());
        source = current.source();
    }
    UpstreamError::Connect {
        url: url.to_string(),
        message,
    }
}

#[derive(Debug)]
pub(super) struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

pub(super) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            let error = Refusal(format!("more than {MAX_REDIRECTS} redirects"));
            return attempt.error(error);
        }
        match link_local_refusal(attempt.url()) {
            Some(reason) => {
                let error = Refusal(format!("redirect {reason}"));
                attempt.error(error)
            }
            None => attempt.follow(),
        }
    })
}

/// Why `url` may not be contacted: its host is a literal link-local address.
pub(super) fn link_local_refusal(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    is_link_local(ip).then(|| format!("to link-local address {ip}"))
}

/// 169.254.0.0/16 and fe80::/10, also when written as an IPv4-mapped IPv6 address.
pub(super) fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(mapped) => mapped.is_link_local(),
            None => (ip.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

/// DNS that drops link-local answers for hosts other than the configured upstream hosts.
struct GuardedResolver {
    configured_hosts: Vec<String>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let configured = self.configured_hosts.contains(&host);
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addresses
                .into_iter()
                .filter(|address| configured || !is_link_local(address.ip()))
                .collect();
            if kept.is_empty() {
                let refusal = Refusal(format!("{host} resolves only to link-local addresses"));
                return Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `cert_dir` in Docker's certs.d layout: `ca.crt` as an extra root, `client.cert` +
/// `client.key` as the client identity.
pub(super) fn add_certificates(
    mut builder: reqwest::ClientBuilder,
    dir: &std::path::Path,
) -> Result<reqwest::ClientBuilder, String> {
    let read = |name: &str| -> Result<Option<Vec<u8>>, String> {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(format!("certDir {}: {error}", path.display())),
        }
    };
    if let Some(pem) = read("ca.crt")? {
        for certificate in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|error| format!("certDir {}/ca.crt: {error}", dir.display()))?
        {
            builder = builder.add_root_certificate(certificate);
        }
    }
    match (read("client.cert")?, read("client.key")?) {
        (Some(mut pem), Some(key)) => {
            pem.push(b'\n');
            pem.extend_from_slice(&key);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|error| {
                format!("certDir {}: client.cert/client.key: {error}", dir.display())
            })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(format!(
                "certDir {}: client.cert and client.key go together",
                dir.display()
            ))
        }
    }
    Ok(builder)
}
