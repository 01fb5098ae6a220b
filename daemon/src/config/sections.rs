//! Walks a parsed config document into a validated [`Config`], section by section.
//!
//! Rules: each section lists the keys berth reads and the zot keys it knowingly ignores (with
//! the warning text); anything else is an error. Defaults live here, next to the key that
//! they belong to, and match `config/README.md`. Every problem is collected; [`build`] fails
//! only after the whole document has been walked.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::backends;
use super::extensions;
use super::postgres::Environment;
use super::retention;
use super::walk::{describe, join, Ctx, Section};
use super::{
    Config, ConfigErrors, HttpConfig, LogConfig, LogFormat, QuotaConfig, StorageConfig, Warning,
};

/// zot's default port when `http.port` is absent (the embedded berth default sets 5000).
pub(crate) const DEFAULT_PORT: u16 = 8080;
pub(crate) const DEFAULT_DIST_SPEC_VERSION: &str = "1.1.1";
pub(crate) const DEFAULT_GC_DELAY: Duration = Duration::from_secs(3600);
pub(crate) const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(3600);
pub(crate) const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const MAX_WORKERS: u64 = 256;
/// `http.compat` values zot defines.
pub(crate) const COMPAT_MODES: &[&str] = &["docker2s2"];

/// `cluster`, `storage.cacheDriver`, `storage.remoteCache`: zot's ways to run several nodes.
const SEVERAL_NODES: &str = "ignored: berth runs several nodes on a shared \
     storage.storageDriver (S3) and storage.index.postgres instead";

/// Walks `document`, reading environment variables (`BERTH_POSTGRES_URL`) from `env`.
pub(crate) fn build(
    document: &Value,
    env: Environment,
) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let mut ctx = Ctx {
        env,
        ..Ctx::default()
    };
    let config = top_level(&mut ctx, document);
    match config {
        Some(config) if ctx.errors.is_empty() => Ok((config, ctx.warnings)),
        _ => {
            if ctx.errors.is_empty() {
                ctx.error("", "config is invalid");
            }
            Err(ConfigErrors(ctx.errors))
        }
    }
}

fn top_level(ctx: &mut Ctx, document: &Value) -> Option<Config> {
    if !document.is_object() {
        let message = format!("the config must be an object, got {}", describe(document));
        ctx.error("", message);
        return None;
    }
    let build_metadata = "build metadata written by zot; ignored";
    let section = Section::read(
        ctx,
        "",
        document,
        &["distSpecVersion", "storage", "http", "log", "extensions"],
        &[
            (
                "scheduler",
                "zot's scheduler settings; berth sizes its background work itself; \
                 ignored",
            ),
            ("cluster", SEVERAL_NODES),
            ("goVersion", build_metadata),
            ("commit", build_metadata),
            ("releaseTag", build_metadata),
            ("binaryType", build_metadata),
        ],
    )?;
    let dist_spec_version = dist_spec_version(ctx, &section);
    let null = Value::Null;
    let storage = storage(ctx, section.raw("storage"));
    let http = http(ctx, section.raw("http").unwrap_or(&null));
    let log = log(ctx, section.raw("log").unwrap_or(&null));
    let extensions = extensions::extensions(ctx, section.raw("extensions").unwrap_or(&null))?;
    let metrics = extensions::metrics(ctx, &extensions);
    let lint = extensions::lint(ctx, &extensions);
    let scrub = extensions::scrub(ctx, &extensions);
    let sync = extensions::sync(ctx, &extensions);
    let search = extensions::search(ctx, &extensions);
    let ui = extensions::ui(ctx, &extensions);
    let trust = extensions::trust(ctx, &extensions);
    if let (Some(Some(sync)), Some(trust)) = (&sync, &trust) {
        for (index, registry) in sync.registries.iter().enumerate() {
            if registry.only_signed && !trust.active() {
                let path = format!("extensions.sync.registries[{index}].onlySigned");
                let message = "extensions.trust verifies nothing: any signature counts, unverified";
                ctx.warn(&path, message);
            }
        }
    }
    Some(Config {
        dist_spec_version,
        storage: storage?,
        http: http?,
        log: log?,
        extensions,
        metrics: metrics?,
        lint: lint?,
        scrub: scrub?,
        sync: sync?,
        search: search?,
        ui: ui?,
        trust: trust?,
    })
}

fn dist_spec_version(ctx: &mut Ctx, section: &Section<'_>) -> String {
    let key = "distSpecVersion";
    let Some(version) = section.string(ctx, key) else {
        return DEFAULT_DIST_SPEC_VERSION.to_owned();
    };
    if version.is_empty() {
        ctx.error(&section.path_of(key), "must not be empty");
    } else if !version.starts_with("1.1.") && version != "1.1" {
        let message = format!(
            "berth serves distribution-spec 1.1; the configured {version:?} is only reported"
        );
        ctx.warn(&section.path_of(key), message);
    }
    version
}

fn storage(ctx: &mut Ctx, value: Option<&Value>) -> Option<StorageConfig> {
    let Some(value) = value else {
        ctx.error(
            "storage.rootDirectory",
            "required: where berth stores its data",
        );
        return None;
    };
    let section = Section::read(
        ctx,
        "storage",
        value,
        &[
            "rootDirectory",
            "commit",
            "dedupe",
            "gc",
            "gcDelay",
            "gcInterval",
            "immutableTags",
            "quotas",
            "gcTimeWindow",
            "retention",
            "storageDriver",
            "index",
            "redirectBlobURL",
            "subPaths",
        ],
        &[
            ("cacheDriver", SEVERAL_NODES),
            ("remoteCache", SEVERAL_NODES),
            (
                "maxRepos",
                "zot setting not implemented yet in this build; ignored: the number of \
                 repositories is not limited",
            ),
            (
                "fastRestart",
                "berth does not re-parse storage at startup, so there is nothing to \
                 skip; ignored",
            ),
            (
                "gcReferrers",
                "older zot setting (replaced by retention); ignored",
            ),
            (
                "untaggedImageRetentionDelay",
                "older zot setting (replaced by retention.delay); ignored",
            ),
        ],
    )?;
    let root_directory = match section.string(ctx, "rootDirectory") {
        Some(root) if root.trim().is_empty() => {
            ctx.error(&section.path_of("rootDirectory"), "must not be empty");
            None
        }
        Some(root) => Some(PathBuf::from(root)),
        None => {
            if !section.has("rootDirectory") {
                let message = "required: where berth stores its data";
                ctx.error(&section.path_of("rootDirectory"), message);
            }
            None
        }
    };
    let commit = section.boolean(ctx, "commit");
    if commit == Some(false) {
        let message = "false: commits are not fsynced, so acknowledged pushes can be lost on a \
                       crash or power failure (berth's default is true)";
        ctx.warn(&section.path_of("commit"), message);
    }
    let dedupe = section.boolean(ctx, "dedupe");
    if dedupe == Some(false) {
        let message = "berth always stores each blob once and links it into repositories; \
                       dedupe=false has no effect";
        ctx.warn(&section.path_of("dedupe"), message);
    }
    let gc = section.boolean(ctx, "gc");
    let gc_delay = section.duration(ctx, "gcDelay");
    let gc_interval = section.positive_duration(ctx, "gcInterval");
    let immutable_tags = section.strings(ctx, "immutableTags");
    if let Some(patterns) = &immutable_tags {
        if let Err(error) = crate::policy::tag_policy::ImmutableTags::new(patterns) {
            ctx.error(&section.path_of("immutableTags"), error);
        }
    }
    let quotas = quotas(ctx, &section);
    let gc_time_window = retention::time_window(ctx, &section);
    let retention = retention::retention(ctx, &section, gc_delay.unwrap_or(DEFAULT_GC_DELAY));
    let backends = backends::backends(ctx, &section);
    if gc == Some(false) {
        for key in ["retention", "gcTimeWindow"] {
            if section.has(key) {
                ctx.warn(&section.path_of(key), "no effect: storage.gc is false");
            }
        }
    }
    let ok = |present: bool, parsed: bool| !present || parsed;
    let all_parsed = ok(section.has("commit"), commit.is_some())
        && ok(section.has("dedupe"), dedupe.is_some())
        && ok(section.has("gc"), gc.is_some())
        && ok(section.has("gcDelay"), gc_delay.is_some())
        && ok(section.has("gcInterval"), gc_interval.is_some())
        && ok(section.has("immutableTags"), immutable_tags.is_some())
        && quotas.is_some()
        && gc_time_window.is_some()
        && retention.is_some()
        && backends.is_some();
    if !all_parsed {
        return None;
    }
    Some(StorageConfig {
        root_directory: root_directory?,
        commit: commit.unwrap_or(true),
        dedupe: dedupe.unwrap_or(true),
        gc: gc.unwrap_or(true),
        gc_delay: gc_delay.unwrap_or(DEFAULT_GC_DELAY),
        gc_interval: gc_interval.unwrap_or(DEFAULT_GC_INTERVAL),
        immutable_tags: immutable_tags.unwrap_or_default(),
        quotas: quotas?,
        gc_time_window: gc_time_window?,
        retention: retention?,
        backends: backends?,
    })
}

/// `storage.quotas`: `{"GLOB": {"maxBytes": N, "maxRepositories": N}, ...}`.
fn quotas(ctx: &mut Ctx, storage: &Section<'_>) -> Option<Vec<QuotaConfig>> {
    let Some(value) = storage.raw("quotas") else {
        return Some(Vec::new());
    };
    let path = storage.path_of("quotas");
    let Value::Object(map) = value else {
        ctx.error(
            &path,
            format!(
                "expected an object keyed by repository glob, got {}",
                describe(value)
            ),
        );
        return None;
    };
    let mut quotas = Vec::new();
    let mut ok = true;
    for (pattern, limits) in map {
        let entry_path = join(&path, pattern);
        if let Err(error) = crate::policy::quota::Quotas::glob(pattern) {
            ctx.error(&entry_path, error);
            ok = false;
            continue;
        }
        let Some(entry) = Section::read(
            ctx,
            &entry_path,
            limits,
            &["maxBytes", "maxRepositories"],
            &[],
        ) else {
            ok = false;
            continue;
        };
        let max_bytes = entry.integer(ctx, "maxBytes", 0, u64::MAX);
        let max_repositories = entry.integer(ctx, "maxRepositories", 0, u64::MAX);
        let parsed = |key: &str, value: &Option<u64>| !entry.has(key) || value.is_some();
        if !parsed("maxBytes", &max_bytes) || !parsed("maxRepositories", &max_repositories) {
            ok = false;
            continue;
        }
        if max_bytes.is_none() && max_repositories.is_none() {
            ctx.error(&entry_path, "needs maxBytes, maxRepositories or both");
            ok = false;
            continue;
        }
        quotas.push(QuotaConfig {
            pattern: pattern.clone(),
            max_bytes,
            max_repositories,
        });
    }
    ok.then_some(quotas)
}

fn http(ctx: &mut Ctx, value: &Value) -> Option<HttpConfig> {
    let section = Section::read(
        ctx,
        "http",
        value,
        &[
            "address",
            "port",
            "workers",
            "readHeaderTimeout",
            "idleTimeout",
            "bodyIdleTimeout",
            "readTimeout",
            "drainTimeout",
            "shutdownDelay",
            "externalUrl",
            "realm",
            "compat",
            "auth",
            "accessControl",
            "tls",
            "ratelimit",
            "allowOrigin",
        ],
        &[(
            "writeTimeout",
            "berth does not bound the time to send a response; ignored",
        )],
    )?;
    let address = address(ctx, &section);
    let port = port(ctx, &section);
    let workers = section.integer(ctx, "workers", 1, MAX_WORKERS);
    let read_header_timeout = section.positive_duration(ctx, "readHeaderTimeout");
    let idle_timeout = section.positive_duration(ctx, "idleTimeout");
    let drain_timeout = section.positive_duration(ctx, "drainTimeout");
    let shutdown_delay = section.duration(ctx, "shutdownDelay");
    let body_idle_timeout = section.positive_duration(ctx, "bodyIdleTimeout");
    let read_timeout = section.positive_duration(ctx, "readTimeout");
    if section.has("readTimeout") {
        let message = if section.has("bodyIdleTimeout") {
            "ignored because http.bodyIdleTimeout is also set"
        } else {
            "zot's bound on reading a whole request is read as http.bodyIdleTimeout: the \
             longest gap without request body bytes"
        };
        ctx.warn(&section.path_of("readTimeout"), message);
    }
    let external_url = external_url(ctx, &section);
    let realm = section.string(ctx, "realm");
    let compat = compat(ctx, &section);
    let auth = super::auth::auth(ctx, &section);
    let tls = super::tls::tls(ctx, &section);
    let ratelimit = super::ratelimit::ratelimit(ctx, &section);
    let allow_origin = allow_origin(ctx, &section);
    // Who can be named: htpasswd users, token subjects, or client certificates (mTLS).
    let identified = matches!(&auth, Some(auth) if auth.basic.is_some() || auth.bearer.is_some())
        || matches!(&tls, Some(Some(tls)) if tls.cacert.is_some());
    if let (Some(auth), Some(None)) = (&auth, &tls) {
        if auth.mtls.is_some() {
            ctx.warn(
                "http.auth.mtls",
                "ignored: client certificates are asked for only with http.tls.cacert",
            );
        }
    }
    // LDAP and OpenID logins bring groups the config cannot list.
    let provider_groups = matches!(&auth, Some(auth) if auth.basic.as_ref()
        .is_some_and(|basic| basic.ldap.is_some() || basic.openid.is_some()));
    let access = super::access::access(ctx, &section, identified, provider_groups);
    let parsed = |key: &str, ok: bool| !section.has(key) || ok;
    let all_parsed = parsed("workers", workers.is_some())
        && parsed("readHeaderTimeout", read_header_timeout.is_some())
        && parsed("idleTimeout", idle_timeout.is_some())
        && parsed("drainTimeout", drain_timeout.is_some())
        && parsed("shutdownDelay", shutdown_delay.is_some())
        && parsed("bodyIdleTimeout", body_idle_timeout.is_some())
        && parsed("readTimeout", read_timeout.is_some())
        && parsed("externalUrl", external_url.is_some())
        && parsed("realm", realm.is_some());
    if !all_parsed {
        return None;
    }
    let auth = auth?;
    Some(HttpConfig {
        auth: auth.basic,
        bearer: auth.bearer,
        apikey: auth.apikey,
        mtls: auth.mtls.unwrap_or_default(),
        address: address?,
        port: port?,
        workers: workers.map(|count| usize::try_from(count).expect("workers is at most 256")),
        read_header_timeout: read_header_timeout.unwrap_or(DEFAULT_READ_HEADER_TIMEOUT),
        idle_timeout: idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
        body_idle_timeout: body_idle_timeout
            .or(read_timeout)
            .unwrap_or(DEFAULT_BODY_IDLE_TIMEOUT),
        drain_timeout: drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        shutdown_delay: shutdown_delay.unwrap_or(Duration::ZERO),
        external_url,
        realm,
        compat: compat?,
        access: access?,
        tls: tls?,
        ratelimit: ratelimit?,
        allow_origin: allow_origin?,
    })
}

/// `http.allowOrigin`: zot's comma-separated origins, each `*` or `scheme://host[:port]`.
fn allow_origin(ctx: &mut Ctx, section: &Section<'_>) -> Option<Vec<String>> {
    let key = "allowOrigin";
    let Some(text) = section.string(ctx, key) else {
        return (!section.has(key)).then(Vec::new);
    };
    let mut origins = Vec::new();
    for origin in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let valid = origin == "*"
            || origin.split_once("://").is_some_and(|(scheme, host)| {
                matches!(scheme, "http" | "https")
                    && !host.is_empty()
                    && !host.contains(['/', '?', '#', ' ', '*'])
            });
        if !valid {
            let message =
                format!("{origin:?} is not an origin: expected * or scheme://host[:port], no path");
            ctx.error(&section.path_of(key), message);
            return None;
        }
        origins.push(origin.trim_end_matches('/').to_owned());
    }
    if origins.iter().any(|origin| origin == "*") {
        let message = "every web origin may read answers, without credentials (berth never \
                       allows credentials with *; list origins to allow them)";
        ctx.warn(&section.path_of(key), message);
    }
    Some(origins)
}

fn address(ctx: &mut Ctx, section: &Section<'_>) -> Option<IpAddr> {
    let key_path = section.path_of("address");
    let Some(text) = section.string(ctx, "address") else {
        return (!section.has("address")).then_some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    };
    if text.is_empty() {
        let message = "empty: listening on all interfaces (0.0.0.0) as zot does; write \
                       \"0.0.0.0\" to say so";
        ctx.warn(&key_path, message);
        return Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    if text.eq_ignore_ascii_case("localhost") {
        ctx.warn(&key_path, "\"localhost\" is read as 127.0.0.1");
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(&text);
    match bare.parse::<IpAddr>() {
        Ok(address) => Some(address),
        Err(_) => {
            let message = format!(
                "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1, got {text:?} \
                 (host names other than localhost are not resolved)"
            );
            ctx.error(&key_path, message);
            None
        }
    }
}

/// zot writes the port as a string (`"8080"`); a number is accepted too. 0 = ephemeral.
fn port(ctx: &mut Ctx, section: &Section<'_>) -> Option<u16> {
    let Some(value) = section.raw("port") else {
        return Some(DEFAULT_PORT);
    };
    let parsed = match value {
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u16>().ok()
        }
        Value::Number(number) => number.as_u64().and_then(|port| u16::try_from(port).ok()),
        _ => None,
    };
    if parsed.is_none() {
        let message = format!(
            "expected a port number from 0 to 65535, got {}",
            describe(value)
        );
        ctx.error(&section.path_of("port"), message);
    }
    parsed
}

fn external_url(ctx: &mut Ctx, section: &Section<'_>) -> Option<String> {
    let url = section.string(ctx, "externalUrl")?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(host) if !host.is_empty() && !url.contains(char::is_whitespace) => Some(url),
        _ => {
            let message = format!(
                "expected an absolute http:// or https:// URL such as \
                 \"https://registry.example.com\", got {url:?}"
            );
            ctx.error(&section.path_of("externalUrl"), message);
            None
        }
    }
}

fn compat(ctx: &mut Ctx, section: &Section<'_>) -> Option<Vec<String>> {
    let Some(modes) = section.strings(ctx, "compat") else {
        return (!section.has("compat")).then(Vec::new);
    };
    let mut ok = true;
    for (index, mode) in modes.iter().enumerate() {
        if !COMPAT_MODES.contains(&mode.as_str()) {
            let path = format!("{}[{index}]", section.path_of("compat"));
            let message = format!(
                "unknown compatibility mode {mode:?} (known: {})",
                COMPAT_MODES.join(", ")
            );
            ctx.error(&path, message);
            ok = false;
        }
    }
    ok.then_some(modes)
}

fn log(ctx: &mut Ctx, value: &Value) -> Option<LogConfig> {
    let section = Section::read(
        ctx,
        "log",
        value,
        &["level", "format", "output", "audit"],
        &[],
    )?;
    let level = match section.string(ctx, "level") {
        None => (!section.has("level")).then(|| "info".to_owned()),
        Some(level) => match level.to_ascii_lowercase().as_str() {
            name @ ("trace" | "debug" | "info" | "warn" | "error") => Some(name.to_owned()),
            name @ ("fatal" | "panic") => {
                let message = format!("{name:?} is read as \"error\"");
                ctx.warn(&section.path_of("level"), message);
                Some("error".to_owned())
            }
            _ => {
                let message =
                    format!("expected one of trace, debug, info, warn, error, got {level:?}");
                ctx.error(&section.path_of("level"), message);
                None
            }
        },
    };
    let format = match section.string(ctx, "format") {
        None => (!section.has("format")).then_some(LogFormat::Text),
        Some(format) if format.eq_ignore_ascii_case("text") => Some(LogFormat::Text),
        Some(format) if format.eq_ignore_ascii_case("json") => Some(LogFormat::Json),
        Some(format) => {
            let message = format!("expected \"text\" or \"json\", got {format:?}");
            ctx.error(&section.path_of("format"), message);
            None
        }
    };
    let output = log_path(ctx, &section, "output");
    let audit = log_path(ctx, &section, "audit");
    Some(LogConfig {
        level: level?,
        format: format?,
        output: output?,
        audit: audit?,
    })
}

/// A log file path; absent or empty = none (zot: empty output means standard output).
fn log_path(ctx: &mut Ctx, section: &Section<'_>, key: &str) -> Option<Option<PathBuf>> {
    match section.string(ctx, key) {
        Some(path) if path.is_empty() => Some(None),
        Some(path) => Some(Some(PathBuf::from(path))),
        None => (!section.has(key)).then_some(None),
    }
}
