//! `extensions.sync` (zot's keys): the typed mirroring settings and their checks.
//! `crate::ext::sync` runs them; `crate::ext::sync::content` compiles the `content` rules.
//!
//! Rules:
//! - zot's key names and defaults, except `manifestCheckInterval` (berth 5m, zot 0 = ask
//!   upstream on every tag pull) and `retryDelay` without `maxRetries` (berth 1s).
//! - `urls` are `http://` or `https://` plus `host[:port]` only (a trailing `/` is dropped): no
//!   path, query or user info, since credentials belong in `credentialsFile`.
//! - `credentialsFile` is not read here (it holds secrets that may change); when sync is
//!   enabled it must exist and be readable. `certDir` must be a directory.
//! - `maxRetries > 0` needs `retryDelay` (zot's rule); `maxRetryDelay` defaults to
//!   `retryDelay` (a fixed delay) and may not be below it. `syncTimeout` `0` means the default
//!   (3h), as in zot; `pollInterval` `0` means no periodic sync.
//! - Content globs, destinations and tag regexes are checked with the functions
//!   `crate::ext::sync::content` compiles them with, so a loaded config always compiles.
//! - zot keys berth does not implement are accepted with one warning each. `onlySigned`
//!   without `extensions.trust` warns (sections.rs): any signature then counts, unverified.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::walk::{describe, list, Ctx, Ignored, Section};
use super::{compile_tag_pattern, ExtensionsConfig};
use crate::ext::sync::content::{compile_prefix, is_literal_prefix, normalize_destination};

/// `syncTimeout` when absent or `0` (zot's default).
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(3 * 3600);
/// `manifestCheckInterval` when absent (berth; zot's is 0).
pub const DEFAULT_MANIFEST_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// `retryDelay` when absent and `maxRetries` is 0.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// `reqConcurrent` when absent (regclient's per-host default, which zot uses).
pub const DEFAULT_REQ_CONCURRENT: usize = 3;
/// Largest `reqConcurrent`.
pub const MAX_REQ_CONCURRENT: u64 = 1024;

/// `extensions.sync`.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncConfig {
    /// `enable`; defaults to true when `registries` is non-empty. A disabled section gives
    /// `Config::sync == None`, so this is true in a loaded config.
    pub enabled: bool,
    /// `credentialsFile`: JSON `{"host[:port]": {"username": .., "password": ..}}`, read by
    /// the sync service (`""` = none).
    pub credentials_file: Option<PathBuf>,
    /// `registries`, in order (on demand tries them in this order).
    pub registries: Vec<RegistryConfig>,
}

/// One entry of `extensions.sync.registries`.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryConfig {
    /// `urls`: non-empty; `http(s)://host[:port]`; tried in order.
    pub urls: Vec<String>,
    /// `onDemand` (default false).
    pub on_demand: bool,
    /// `pollInterval`: periodic sync only if `Some` and `content` is non-empty.
    pub poll_interval: Option<Duration>,
    /// `content`: empty admits every repository (on demand).
    pub content: Vec<ContentConfig>,
    /// `tlsVerify` (default true).
    pub tls_verify: bool,
    /// `certDir`: Docker certs.d layout (`ca.crt`, `client.cert`, `client.key`).
    pub cert_dir: Option<PathBuf>,
    /// `maxRetries` (default 0).
    pub max_retries: u32,
    /// `retryDelay`: required when `maxRetries > 0`; 1s otherwise.
    pub retry_delay: Duration,
    /// `maxRetryDelay` (default `retryDelay`): cap of the exponential backoff.
    pub max_retry_delay: Duration,
    /// `onlySigned`: mirror only images with a (trusted, with `extensions.trust`) signature.
    pub only_signed: bool,
    /// `preserveDigest` (default false). berth never converts images, so digests are always
    /// preserved.
    pub preserve_digest: bool,
    /// `syncTimeout` (default 3h): bound of one whole image sync.
    pub sync_timeout: Duration,
    /// `manifestCheckInterval` (berth default 5m): how long a cached tag is served without
    /// asking upstream.
    pub manifest_check_interval: Duration,
    /// `reqConcurrent` (default 3): parallel requests to this upstream.
    pub req_concurrent: usize,
    /// `reqPerSec` (default unlimited).
    pub req_per_sec: Option<f64>,
}

/// One entry of a registry's `content`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentConfig {
    /// `prefix`: glob over upstream repository names, as written.
    pub prefix: String,
    /// `tags`.
    pub tags: Option<TagFilter>,
    /// `destination`: local namespace, as written.
    pub destination: Option<String>,
    /// `stripPrefix` (default false).
    pub strip_prefix: bool,
}

/// A content rule's `tags`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagFilter {
    /// `regex`: must match (unanchored).
    pub regex: Option<String>,
    /// `excludeRegex`: must not match.
    pub exclude_regex: Option<String>,
    /// `semver` (default false): keep only semver tags.
    pub semver: bool,
}

const NOT_YET: &str = "zot setting not implemented yet in this build; ignored";
const CREDENTIAL_HELPER: &str = "credential helpers are not implemented yet in this build; \
                                 ignored: credentials come from credentialsFile only";
const PLATFORMS: &str = "platform filters are not implemented yet in this build; ignored: \
                         periodic sync mirrors every platform, on demand fetches the one asked";

const SYNC_IGNORED: &[Ignored] = &[(
    "downloadDir",
    "zot setting not needed by berth; ignored: images are staged in the store itself",
)];

const REGISTRY_KEYS: &[&str] = &[
    "urls",
    "onDemand",
    "pollInterval",
    "content",
    "tlsVerify",
    "certDir",
    "maxRetries",
    "retryDelay",
    "maxRetryDelay",
    "onlySigned",
    "preserveDigest",
    "syncTimeout",
    "manifestCheckInterval",
    "reqConcurrent",
    "reqPerSec",
];

const REGISTRY_IGNORED: &[Ignored] = &[
    ("syncLegacyCosignTags", NOT_YET),
    ("disableHTTP2", NOT_YET),
    ("maxIdleConnsPerHost", NOT_YET),
    ("credentialHelper", CREDENTIAL_HELPER),
    ("oauth2CredentialHelper", CREDENTIAL_HELPER),
    ("credentialHelperConfig", CREDENTIAL_HELPER),
    ("platforms", PLATFORMS),
];

/// `extensions.sync` typed: `Some(None)` when absent or disabled, `None` after an error.
/// The section is checked even when disabled; files are checked only when it is enabled.
pub(super) fn sync(ctx: &mut Ctx, extensions: &ExtensionsConfig) -> Option<Option<SyncConfig>> {
    let Some(section) = &extensions.sync else {
        return Some(None);
    };
    let enabled = section.enabled;
    let known = Section::read(
        ctx,
        "extensions.sync",
        &section.raw,
        &["enable", "credentialsFile", "registries"],
        SYNC_IGNORED,
    )?;
    let credentials_file = credentials_file(ctx, &known, enabled);
    let registries = list(ctx, &known, "registries", |ctx, path, value| {
        registry(ctx, path, value, enabled)
    });
    let config = SyncConfig {
        enabled,
        credentials_file: credentials_file?,
        registries: registries?,
    };
    Some(enabled.then_some(config))
}

fn credentials_file(
    ctx: &mut Ctx,
    section: &Section<'_>,
    enabled: bool,
) -> Option<Option<PathBuf>> {
    let key = "credentialsFile";
    if !section.has(key) {
        return Some(None);
    }
    let path = section.string(ctx, key)?;
    if path.is_empty() {
        return Some(None);
    }
    let path = PathBuf::from(path);
    if enabled {
        if let Err(message) = check_readable_file(&path) {
            ctx.error(&section.path_of(key), message);
            return None;
        }
    }
    Some(Some(path))
}

/// Opens `path` (reading nothing) to check that it is a readable file.
fn check_readable_file(path: &Path) -> Result<(), String> {
    let cannot =
        |error: std::io::Error| format!("cannot read credentials file {}: {error}", path.display());
    let file = std::fs::File::open(path).map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    Ok(())
}

/// Whether `key` is absent or was read without error.
fn parsed<T>(section: &Section<'_>, key: &str, value: &Option<T>) -> bool {
    !section.has(key) || value.is_some()
}

fn registry(ctx: &mut Ctx, path: &str, value: &Value, enabled: bool) -> Option<RegistryConfig> {
    let section = Section::read(ctx, path, value, REGISTRY_KEYS, REGISTRY_IGNORED)?;
    let urls = urls(ctx, &section);
    let on_demand = section.boolean(ctx, "onDemand");
    let poll_interval = section.duration(ctx, "pollInterval");
    let content = list(ctx, &section, "content", content);
    let tls_verify = section.boolean(ctx, "tlsVerify");
    let cert_dir = cert_dir(ctx, &section, enabled);
    let max_retries = section.integer(ctx, "maxRetries", 0, u64::from(u32::MAX));
    let retry_delay = section.duration(ctx, "retryDelay");
    let max_retry_delay = section.duration(ctx, "maxRetryDelay");
    let only_signed = section.boolean(ctx, "onlySigned");
    let preserve_digest = section.boolean(ctx, "preserveDigest");
    let sync_timeout = section.duration(ctx, "syncTimeout");
    let manifest_check_interval = section.duration(ctx, "manifestCheckInterval");
    let req_concurrent = section.integer(ctx, "reqConcurrent", 1, MAX_REQ_CONCURRENT);
    let req_per_sec = req_per_sec(ctx, &section);
    let all_parsed = parsed(&section, "onDemand", &on_demand)
        && parsed(&section, "pollInterval", &poll_interval)
        && parsed(&section, "tlsVerify", &tls_verify)
        && parsed(&section, "maxRetries", &max_retries)
        && parsed(&section, "retryDelay", &retry_delay)
        && parsed(&section, "maxRetryDelay", &max_retry_delay)
        && parsed(&section, "onlySigned", &only_signed)
        && parsed(&section, "preserveDigest", &preserve_digest)
        && parsed(&section, "syncTimeout", &sync_timeout)
        && parsed(&section, "manifestCheckInterval", &manifest_check_interval)
        && parsed(&section, "reqConcurrent", &req_concurrent)
        && parsed(&section, "reqPerSec", &req_per_sec);
    let (urls, content, cert_dir) = (urls?, content?, cert_dir?);
    if !all_parsed {
        return None;
    }
    let max_retries = u32::try_from(max_retries.unwrap_or(0)).expect("checked to fit u32");
    if max_retries > 0 && retry_delay.is_none() {
        let message = "required when maxRetries is greater than 0 (as in zot)";
        ctx.error(&section.path_of("retryDelay"), message);
        return None;
    }
    let retry_delay = retry_delay.unwrap_or(DEFAULT_RETRY_DELAY);
    let max_retry_delay = max_retry_delay.unwrap_or(retry_delay);
    if max_retry_delay < retry_delay {
        let message = "must not be shorter than retryDelay (it caps the backoff)";
        ctx.error(&section.path_of("maxRetryDelay"), message);
        return None;
    }
    let only_signed = only_signed.unwrap_or(false);
    let on_demand = on_demand.unwrap_or(false);
    let poll_interval = poll_interval.filter(|interval| !interval.is_zero());
    let periodic = poll_interval.is_some() && !content.is_empty();
    if poll_interval.is_some() && content.is_empty() {
        let message = "periodic sync needs content rules (as in zot); no periodic sync";
        ctx.warn(&section.path_of("pollInterval"), message);
    } else if !on_demand && !periodic {
        let message = "neither onDemand nor pollInterval with content: this registry is unused";
        ctx.warn(path, message);
    }
    Some(RegistryConfig {
        urls,
        on_demand,
        poll_interval,
        content,
        tls_verify: tls_verify.unwrap_or(true),
        cert_dir,
        max_retries,
        retry_delay,
        max_retry_delay,
        only_signed,
        preserve_digest: preserve_digest.unwrap_or(false),
        sync_timeout: sync_timeout
            .filter(|timeout| !timeout.is_zero())
            .unwrap_or(DEFAULT_SYNC_TIMEOUT),
        manifest_check_interval: manifest_check_interval.unwrap_or(DEFAULT_MANIFEST_CHECK_INTERVAL),
        req_concurrent: req_concurrent.map_or(DEFAULT_REQ_CONCURRENT, |count| {
            usize::try_from(count).expect("at most MAX_REQ_CONCURRENT")
        }),
        req_per_sec,
    })
}

fn urls(ctx: &mut Ctx, registry: &Section<'_>) -> Option<Vec<String>> {
    let key = "urls";
    if !registry.has(key) {
        let message = "required: the upstream registry's URLs, e.g. [\"https://ghcr.io\"]";
        ctx.error(&registry.path_of(key), message);
        return None;
    }
    let urls = registry.strings(ctx, key)?;
    if urls.is_empty() {
        ctx.error(&registry.path_of(key), "must list at least one URL");
        return None;
    }
    let mut out = Vec::with_capacity(urls.len());
    for (index, url) in urls.iter().enumerate() {
        match check_url(url) {
            Ok(url) => out.push(url),
            Err(message) => ctx.error(&format!("{}[{index}]", registry.path_of(key)), message),
        }
    }
    (out.len() == urls.len()).then_some(out)
}

/// Checks an upstream URL: `http(s)://host[:port]`, an optional trailing `/` dropped.
pub(crate) fn check_url(url: &str) -> Result<String, String> {
    let expected = || format!("expected http://host[:port] or https://host[:port], got {url:?}");
    let (scheme, rest) = url.split_once("://").ok_or_else(expected)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(expected());
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(format!(
            "{url:?} carries user info; put credentials in extensions.sync.credentialsFile"
        ));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "{url:?} has a path, query or fragment; give only the scheme and host[:port]"
        ));
    }
    let (host, port) = split_host_port(authority).ok_or_else(expected)?;
    let valid_host = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|address| address.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    let valid_port = port.is_none_or(|port| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    if !valid_host || !valid_port {
        return Err(expected());
    }
    Ok(format!("{scheme}://{authority}"))
}

/// `host` and `port` of `host[:port]` (`[v6]:port` for IPv6).
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let (host, rest) = authority.split_at(end);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    Some(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn cert_dir(ctx: &mut Ctx, registry: &Section<'_>, enabled: bool) -> Option<Option<PathBuf>> {
    let key = "certDir";
    if !registry.has(key) {
        return Some(None);
    }
    let dir = registry.string(ctx, key)?;
    if dir.is_empty() {
        return Some(None);
    }
    let dir = PathBuf::from(dir);
    if enabled && !dir.is_dir() {
        let message = format!("{} is not a directory", dir.display());
        ctx.error(&registry.path_of(key), message);
        return None;
    }
    Some(Some(dir))
}

fn req_per_sec(ctx: &mut Ctx, registry: &Section<'_>) -> Option<f64> {
    let value = registry.raw("reqPerSec")?;
    match value.as_f64() {
        Some(rate) if rate.is_finite() && rate > 0.0 => Some(rate),
        _ => {
            let message = format!(
                "expected a number of requests per second above 0, got {}",
                describe(value)
            );
            ctx.error(&registry.path_of("reqPerSec"), message);
            None
        }
    }
}

fn content(ctx: &mut Ctx, path: &str, value: &Value) -> Option<ContentConfig> {
    let section = Section::read(
        ctx,
        path,
        value,
        &["prefix", "tags", "destination", "stripPrefix"],
        &[("platforms", PLATFORMS)],
    )?;
    let prefix = match section.has("prefix") {
        true => section.string(ctx, "prefix"),
        false => {
            let message = "required: a glob over upstream repository names, e.g. \"**\"";
            ctx.error(&section.path_of("prefix"), message);
            None
        }
    };
    let prefix = prefix.and_then(|prefix| match compile_prefix(&prefix) {
        Ok(_) => Some(prefix),
        Err(message) => {
            ctx.error(&section.path_of("prefix"), message);
            None
        }
    });
    let destination = section.string(ctx, "destination");
    let destination_ok = match destination.as_deref().map(normalize_destination) {
        Some(Err(message)) => {
            ctx.error(&section.path_of("destination"), message);
            false
        }
        _ => parsed(&section, "destination", &destination),
    };
    let strip_prefix = section.boolean(ctx, "stripPrefix");
    let tags = match section.raw("tags") {
        Some(tags) => tags_filter(ctx, &section.path_of("tags"), tags).map(Some),
        None => Some(None),
    };
    let prefix = prefix?;
    if !(destination_ok && parsed(&section, "stripPrefix", &strip_prefix)) {
        return None;
    }
    let strip_prefix = strip_prefix.unwrap_or(false);
    let empty_destination = destination
        .as_deref()
        .is_none_or(|destination| destination.trim_matches('/').is_empty());
    if strip_prefix && is_literal_prefix(&prefix) && empty_destination {
        let message = "stripPrefix with a prefix that names one repository needs a \
                       destination (the repository would get an empty name)";
        ctx.error(&section.path_of("stripPrefix"), message);
        return None;
    }
    Some(ContentConfig {
        prefix,
        tags: tags?,
        destination,
        strip_prefix,
    })
}

fn tags_filter(ctx: &mut Ctx, path: &str, value: &Value) -> Option<TagFilter> {
    let section = Section::read(ctx, path, value, &["regex", "excludeRegex", "semver"], &[])?;
    let mut ok = true;
    let mut regex_at = |ctx: &mut Ctx, key: &str| {
        let pattern = section.string(ctx, key);
        ok &= parsed(&section, key, &pattern);
        let pattern = pattern?;
        if key == "regex" && pattern.is_empty() {
            let message = "must not be empty (zot then admits no tag); leave it out to admit \
                           every tag";
            ctx.error(&section.path_of(key), message);
            ok = false;
            return None;
        }
        if let Err(message) = compile_tag_pattern(&pattern) {
            ctx.error(&section.path_of(key), message);
            ok = false;
            return None;
        }
        Some(pattern)
    };
    let regex = regex_at(ctx, "regex");
    let exclude_regex = regex_at(ctx, "excludeRegex");
    let semver = section.boolean(ctx, "semver");
    if !ok || !parsed(&section, "semver", &semver) {
        return None;
    }
    Some(TagFilter {
        regex,
        exclude_regex,
        semver: semver.unwrap_or(false),
    })
}
