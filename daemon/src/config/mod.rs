//! berth's configuration: zot's `config.json`, accepted as it is.
//!
//! Owns the config tree ([`Config`] and its sections), loading (file or embedded default), and
//! validation. Rules:
//! - Load = parse (JSON; YAML for `.yaml`/`.yml` files) -> walk and validate -> [`Config`].
//!   Every problem is reported at once, each with its key path ([`ConfigErrors`]), before
//!   anything starts.
//! - zot's key names (camelCase). A key that matches a known key only ignoring case is accepted
//!   with a warning (viper is case-insensitive). Unknown keys are errors, except the zot keys
//!   berth knowingly does not implement yet, which are accepted with one [`Warning`] each.
//! - Defaults are zot's, except where berth deliberately differs: `storage.commit` is true
//!   (durable), `log.level` is info, and the embedded default config listens on 127.0.0.1:5000.
//! - Each subsystem receives only its own section. `config/README.md` is the key reference.

mod access;
mod auth;
#[cfg(test)]
mod auth_tests;
mod backends;
#[cfg(test)]
mod backends_tests;
mod bearer;
mod document;
mod duration;
#[cfg(test)]
mod extension_tests;
mod extensions;
mod ldap;
mod openid;
mod postgres;
mod ratelimit;
mod retention;
#[cfg(test)]
mod retention_tests;
mod sections;
mod sync;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;
mod tls;
mod walk;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use access::{AccessConfig, Action, MetricsAccessConfig, PolicyConfig, RepositoryPolicyConfig};
pub use auth::{AuthConfig, Htpasswd, HtpasswdError};
pub use backends::{S3Credentials, S3Driver, Secret, StorageBackends};
pub use bearer::BearerConfig;
pub use duration::parse_go_duration;
pub use ldap::{LdapConfig, LdapTransport};
pub(crate) use openid::is_http_url;
pub use openid::{OpenIdConfig, OpenIdProvider, ProviderKind};
pub use postgres::{
    PostgresIndex, PostgresUrl, UrlSource, DEFAULT_POSTGRES_POOL_SIZE, DEFAULT_POSTGRES_SCHEMA,
    MAX_POSTGRES_POOL_SIZE, POSTGRES_URL_ENV,
};
pub use ratelimit::RateLimitConfig;
pub(crate) use retention::{check_repository_glob, compile_tag_pattern};
pub use retention::{KeepTagsConfig, RetentionConfig, RetentionPolicyConfig, TimeWindow};
pub use sync::{
    ContentConfig, RegistryConfig, SyncConfig, TagFilter, DEFAULT_MANIFEST_CHECK_INTERVAL,
    DEFAULT_REQ_CONCURRENT, DEFAULT_RETRY_DELAY, DEFAULT_SYNC_TIMEOUT,
};
pub use tls::TlsConfig;
pub use tls::{IdentityAttribute, MtlsConfig};

/// The embedded default config, used when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.json");

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub dist_spec_version: String,
    pub storage: StorageConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub extensions: ExtensionsConfig,
    /// `extensions.metrics`, typed.
    pub metrics: MetricsConfig,
    /// `extensions.lint`, typed.
    pub lint: LintConfig,
    /// `extensions.scrub`, typed.
    pub scrub: ScrubConfig,
    /// `extensions.sync`, typed: `None` when the section is absent or disabled.
    pub sync: Option<SyncConfig>,
    /// `extensions.search`, typed (userprefs and mgmt follow it).
    pub search: SearchConfig,
    /// `extensions.ui`, typed.
    pub ui: UiConfig,
    /// `extensions.trust`, typed.
    pub trust: TrustConfig,
}

/// `extensions.trust`: zot's `enable`, `cosign` and `notation`, plus berth's `interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustConfig {
    /// Present and not `"enable": false` (zot's rule for trust).
    pub enabled: bool,
    /// `cosign`: verify cosign signatures and accept cosign key uploads (zot: default false).
    pub cosign: bool,
    /// `notation`: verify notation signatures and accept certificate uploads.
    pub notation: bool,
    /// `interval` (berth, default 2h as zot's fixed period): time between re-verification
    /// passes over every signature.
    pub interval: Duration,
}

impl Default for TrustConfig {
    fn default() -> TrustConfig {
        TrustConfig {
            enabled: false,
            cosign: false,
            notation: false,
            interval: Duration::from_secs(2 * 3600),
        }
    }
}

impl TrustConfig {
    /// Whether any signature is verified.
    pub fn active(&self) -> bool {
        self.enabled && (self.cosign || self.notation)
    }
}

/// `extensions.ui`: zot's `enable` (the web UI served under `/`, ext/ui).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UiConfig {
    /// Present and not `"enable": false` (zot's rule for ui).
    pub enabled: bool,
}

/// `extensions.search`: zot's `enable` (`cve` is accepted; CVE scanning is not in this build).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchConfig {
    /// Present and not `"enable": false` (zot's rule for search).
    pub enabled: bool,
}

/// `extensions.scrub`: zot's `enable` and `interval`, plus berth's pacing keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Present and not `"enable": false` (zot's rule for scrub).
    pub enabled: bool,
    /// `interval` (default 24h): time between passes; the first pass runs one interval
    /// after start.
    pub interval: Duration,
    /// `maxBytesPerSecond` (berth, default 256 MiB/s; 0 = unlimited): pace of a pass.
    pub max_bytes_per_second: u64,
    /// `workers` (berth, default: the number of cores): hashing threads.
    pub workers: Option<usize>,
}

impl Default for ScrubConfig {
    fn default() -> ScrubConfig {
        ScrubConfig {
            enabled: false,
            interval: Duration::from_secs(24 * 3600),
            max_bytes_per_second: 256 * 1024 * 1024,
            workers: None,
        }
    }
}

/// `extensions.lint` (zot's keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LintConfig {
    /// `enable` is true (zot: lint is off unless enabled).
    pub enabled: bool,
    /// `mandatoryAnnotations`: keys every image manifest must carry in its annotations or
    /// its config's labels.
    pub mandatory_annotations: Vec<String>,
}

/// `extensions.metrics`: zot's keys plus `prometheus.namespace` (berth).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Present and not `"enable": false` (zot's rule for metrics).
    pub enabled: bool,
    /// `prometheus.path` (default `/metrics`): absolute, outside `/v2/` and the probes.
    pub path: String,
    /// `prometheus.namespace` (berth, default `zot`): prefix of zot's families, `zot` or
    /// `berth`. berth's own families are always `berth_`.
    pub namespace: String,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig {
            enabled: false,
            path: "/metrics".to_owned(),
            namespace: "zot".to_owned(),
        }
    }
}

/// `storage`: where and how the engine keeps its data.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    /// `storage.rootDirectory` (required). Relative paths are relative to the working directory.
    pub root_directory: PathBuf,
    /// `storage.commit`: fsync every commit. zot defaults to false; berth to true (durable).
    pub commit: bool,
    /// `storage.dedupe` (default true). berth always stores a blob once; kept for reporting.
    pub dedupe: bool,
    /// `storage.gc` (default true).
    pub gc: bool,
    /// `storage.gcDelay` (default 1h): minimum age of an orphan before GC removes it.
    pub gc_delay: Duration,
    /// `storage.gcInterval` (default 1h): GC period.
    pub gc_interval: Duration,
    /// `storage.immutableTags` (berth): `[REPOSITORY_GLOB:]TAG_GLOB` patterns of tags a push
    /// cannot move once set (tag_policy.rs). Checked when the config loads.
    pub immutable_tags: Vec<String>,
    /// `storage.quotas` (berth): per-namespace limits, keyed by repository glob (quota.rs).
    pub quotas: Vec<QuotaConfig>,
    /// `storage.gcTimeWindow`: UTC window in which a GC pass may start (`None`: any time).
    pub gc_time_window: Option<TimeWindow>,
    /// `storage.retention`: retention policies (`None`: keep every tag, delete untagged
    /// manifests after `gcDelay`, keep referrers).
    pub retention: Option<RetentionConfig>,
    /// `storage.storageDriver`, `storage.index`, `storage.redirectBlobURL`: where blobs and
    /// the index live (default: both under `rootDirectory`). Validated only in this step of
    /// issue 20: the engine does not read it yet.
    pub backends: StorageBackends,
}

/// One entry of `storage.quotas`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Repository glob (`*` within one path component, `**` across them).
    pub pattern: String,
    /// `maxBytes`: bytes the matching repositories may use together.
    pub max_bytes: Option<u64>,
    /// `maxRepositories`: how many repositories may match.
    pub max_repositories: Option<u64>,
}

/// `http`: the listener and its limits.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// `http.address` (default 127.0.0.1). `localhost` is read as 127.0.0.1.
    pub address: IpAddr,
    /// `http.port` (zot default 8080; string or number; 0 = ephemeral).
    pub port: u16,
    /// `http.workers` (berth): shard count, 1..=256. `None` = number of cores.
    pub workers: Option<usize>,
    /// `http.readHeaderTimeout` (berth, default 5s): time to receive the request head.
    pub read_header_timeout: Duration,
    /// `http.idleTimeout` (berth, default 120s): keep-alive idle time between requests.
    pub idle_timeout: Duration,
    /// `http.bodyIdleTimeout` (berth, default 60s): longest gap without request body bytes.
    /// zot's `http.readTimeout` maps here.
    pub body_idle_timeout: Duration,
    /// `http.drainTimeout` (berth, default 30s): graceful shutdown bound.
    pub drain_timeout: Duration,
    /// `http.shutdownDelay` (berth, default 0s): after SIGTERM, how long berth keeps serving
    /// with `/readyz` answering 503 before it stops accepting (time for load balancers and
    /// Kubernetes to take it out of rotation).
    pub shutdown_delay: Duration,
    /// `http.externalUrl`: the URL clients reach berth at (absolute http or https URL).
    pub external_url: Option<String>,
    /// `http.realm` (zot's default `zot`): the realm of the Basic challenge.
    pub realm: Option<String>,
    /// `http.auth` with htpasswd and/or LDAP: `None` = no Basic authentication.
    pub auth: Option<AuthConfig>,
    /// `http.auth.bearer`: tokens from an external token server are the only way in.
    pub bearer: Option<BearerConfig>,
    /// `http.auth.apikey` (with htpasswd only): users may create API keys and log in with them.
    pub apikey: bool,
    /// `http.auth.mtls`: which part of a verified client certificate names the caller.
    pub mtls: MtlsConfig,
    /// `http.accessControl`: `None` = no authorization (every authenticated user, or every
    /// client without htpasswd, may do everything).
    pub access: Option<AccessConfig>,
    /// `http.compat`: e.g. `["docker2s2"]`.
    pub compat: Vec<String>,
    /// `http.tls`: HTTPS (and mutual TLS with `cacert`); `None` = plain HTTP.
    pub tls: Option<TlsConfig>,
    /// `http.ratelimit`: `None` = no limit.
    pub ratelimit: Option<RateLimitConfig>,
    /// `http.allowOrigin`, split: `*` or `scheme://host[:port]` entries (empty: no CORS).
    pub allow_origin: Vec<String>,
}

/// `log.format` (berth key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `log`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `log.level`: trace, debug, info, warn, error (zot's zerolog names, lower case; also
    /// fatal and panic, read as error). zot defaults to debug; berth to info.
    pub level: String,
    /// `log.format` (berth): text (default) or json.
    pub format: LogFormat,
    /// `log.output`: log file (default stderr).
    pub output: Option<PathBuf>,
    /// `log.audit`: audit log file.
    pub audit: Option<PathBuf>,
}

/// One known extension section, kept raw until the extension that owns it types it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtensionSection {
    /// zot's rule: see [`ExtensionsConfig`].
    pub enabled: bool,
    /// The section as written (an object).
    pub raw: serde_json::Value,
}

/// `extensions`: every known extension section, each `None` when absent.
///
/// `enabled` follows zot: for search, sync, metrics, scrub, ui and trust a present section with
/// no `enable` key is enabled (sync only when it lists `registries`); for lint, mgmt,
/// userprefs and events `enable` must be true.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtensionsConfig {
    pub metrics: Option<ExtensionSection>,
    pub scrub: Option<ExtensionSection>,
    pub lint: Option<ExtensionSection>,
    pub sync: Option<ExtensionSection>,
    pub search: Option<ExtensionSection>,
    pub ui: Option<ExtensionSection>,
    pub mgmt: Option<ExtensionSection>,
    pub userprefs: Option<ExtensionSection>,
    pub trust: Option<ExtensionSection>,
    pub events: Option<ExtensionSection>,
}

impl ExtensionsConfig {
    /// Every extension name berth knows, in the order of the fields.
    pub const NAMES: [&'static str; 10] = [
        "metrics",
        "scrub",
        "lint",
        "sync",
        "search",
        "ui",
        "mgmt",
        "userprefs",
        "trust",
        "events",
    ];

    /// The section of the extension `name`, if present.
    pub fn get(&self, name: &str) -> Option<&ExtensionSection> {
        match name {
            "metrics" => self.metrics.as_ref(),
            "scrub" => self.scrub.as_ref(),
            "lint" => self.lint.as_ref(),
            "sync" => self.sync.as_ref(),
            "search" => self.search.as_ref(),
            "ui" => self.ui.as_ref(),
            "mgmt" => self.mgmt.as_ref(),
            "userprefs" => self.userprefs.as_ref(),
            "trust" => self.trust.as_ref(),
            "events" => self.events.as_ref(),
            _ => None,
        }
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<ExtensionSection>> {
        Some(match name {
            "metrics" => &mut self.metrics,
            "scrub" => &mut self.scrub,
            "lint" => &mut self.lint,
            "sync" => &mut self.sync,
            "search" => &mut self.search,
            "ui" => &mut self.ui,
            "mgmt" => &mut self.mgmt,
            "userprefs" => &mut self.userprefs,
            "trust" => &mut self.trust,
            "events" => &mut self.events,
            _ => return None,
        })
    }

    /// Whether the extension `name` is present and enabled.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.get(name).is_some_and(|section| section.enabled)
    }
}

/// Something berth accepted but wants the operator to know (an ignored zot key, a key matched
/// ignoring case, a value berth reads differently).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(formatter, &self.key_path, &self.message)
    }
}

/// One problem that stops the config from loading. `key_path` is empty for whole-file problems
/// (unreadable file, JSON syntax error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(formatter, &self.key_path, &self.message)
    }
}

fn write_located(formatter: &mut fmt::Formatter<'_>, key_path: &str, message: &str) -> fmt::Result {
    if key_path.is_empty() {
        formatter.write_str(message)
    } else {
        write!(formatter, "{key_path}: {message}")
    }
}

/// Every problem found in one config, one per line when displayed. Never empty.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                formatter.write_str("\n")?;
            }
            write!(formatter, "{error}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn single(message: String) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            key_path: String::new(),
            message,
        }])
    }
}

/// Loads the config file at `path`, or the embedded default ([`DEFAULT_CONFIG`]: 127.0.0.1:5000,
/// rootDirectory `./berth-data`) when `path` is `None`. Files ending in `.yaml`/`.yml` are read
/// as YAML, everything else as JSON.
pub fn load(path: Option<&Path>) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let Some(path) = path else {
        return parse_str(DEFAULT_CONFIG);
    };
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors::single(format!(
            "cannot read config file {}: {error}",
            path.display()
        ))
    })?;
    let is_yaml = path
        .extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            extension.eq_ignore_ascii_case("yaml") || extension.eq_ignore_ascii_case("yml")
        });
    let result = if is_yaml {
        parse_yaml_str(&text)
    } else {
        parse_str(&text)
    };
    result.map_err(|errors| prefix_whole_file_errors(errors, path))
}

/// Parses and validates a JSON config document.
pub fn parse_str(text: &str) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let document = document::parse_json(text).map_err(ConfigErrors::single)?;
    sections::build(&document, postgres::Environment::Process)
}

/// [`parse_str`] with environment variables read from `env` instead of the process.
#[cfg(test)]
pub(crate) fn parse_str_with_env(
    text: &str,
    env: std::collections::BTreeMap<String, String>,
) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let document = document::parse_json(text).map_err(ConfigErrors::single)?;
    sections::build(&document, postgres::Environment::Fixed(env))
}

/// Parses and validates a YAML config document (zot accepts YAML too).
pub fn parse_yaml_str(text: &str) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let document = document::parse_yaml(text).map_err(ConfigErrors::single)?;
    sections::build(&document, postgres::Environment::Process)
}

fn prefix_whole_file_errors(errors: ConfigErrors, path: &Path) -> ConfigErrors {
    ConfigErrors(
        errors
            .0
            .into_iter()
            .map(|error| {
                if error.key_path.is_empty() {
                    ConfigError {
                        key_path: String::new(),
                        message: format!("{}: {}", path.display(), error.message),
                    }
                } else {
                    error
                }
            })
            .collect(),
    )
}
