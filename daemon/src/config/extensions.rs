//! The `extensions` section: which extensions are present and enabled (zot's rules), and the
//! typed settings of the ones berth implements (metrics, lint, scrub; sync in sync.rs).
//!
//! Rules: as sections.rs. A section berth does not implement yet is kept raw and warns once.

use std::time::Duration;

use serde_json::Value;

use super::sections::MAX_WORKERS;
use super::walk::{describe, join, Ctx, Section};
use super::{
    ExtensionSection, ExtensionsConfig, LintConfig, MetricsConfig, ScrubConfig, SearchConfig,
    SyncConfig, TrustConfig, UiConfig,
};

/// Extensions this build implements.
const IMPLEMENTED: &[&str] = &[
    "metrics",
    "lint",
    "scrub",
    "sync",
    "search",
    "mgmt",
    "userprefs",
    "ui",
    "trust",
];

/// Paths the metrics endpoint may not take.
const RESERVED_PATHS: &[&str] = &["/livez", "/readyz", "/startupz"];

/// `extensions.metrics` typed (the section was already checked to be an object with a
/// boolean `enable` by [`extensions`]).
pub(super) fn metrics(ctx: &mut Ctx, extensions: &ExtensionsConfig) -> Option<MetricsConfig> {
    let mut config = MetricsConfig::default();
    let Some(section) = &extensions.metrics else {
        return Some(config);
    };
    config.enabled = section.enabled;
    let path = "extensions.metrics";
    let known = Section::read(ctx, path, &section.raw, &["enable", "prometheus"], &[])?;
    let prometheus = known.raw("prometheus").unwrap_or(&Value::Null);
    let prometheus = Section::read(
        ctx,
        &known.path_of("prometheus"),
        prometheus,
        &["path", "namespace"],
        &[],
    )?;
    let mut ok = true;
    if let Some(metrics_path) = prometheus.string(ctx, "path") {
        let reserved = metrics_path == "/v2"
            || metrics_path.starts_with("/v2/")
            || RESERVED_PATHS.contains(&metrics_path.as_str());
        if !metrics_path.starts_with('/') || metrics_path.contains(['?', '#']) || reserved {
            let message = format!(
                "expected an absolute path outside /v2/ and the health probes, got {}",
                describe(&Value::String(metrics_path))
            );
            ctx.error(&prometheus.path_of("path"), message);
            ok = false;
        } else {
            config.path = metrics_path;
        }
    }
    match prometheus.string(ctx, "namespace").as_deref() {
        None => {}
        Some(namespace @ ("zot" | "berth")) => config.namespace = namespace.to_owned(),
        Some(other) => {
            let message = format!("expected \"zot\" or \"berth\", got {other:?}");
            ctx.error(&prometheus.path_of("namespace"), message);
            ok = false;
        }
    }
    let typed =
        |key: &str| !prometheus.has(key) || prometheus.raw(key).is_some_and(Value::is_string);
    (ok && typed("path") && typed("namespace")).then_some(config)
}

/// `extensions.lint` typed: `mandatoryAnnotations`, each a non-empty key.
pub(super) fn lint(ctx: &mut Ctx, extensions: &ExtensionsConfig) -> Option<LintConfig> {
    let Some(section) = &extensions.lint else {
        return Some(LintConfig::default());
    };
    let path = "extensions.lint";
    let known = Section::read(
        ctx,
        path,
        &section.raw,
        &["enable", "mandatoryAnnotations"],
        &[],
    )?;
    let keys = match known.has("mandatoryAnnotations") {
        true => known.strings(ctx, "mandatoryAnnotations")?,
        false => Vec::new(),
    };
    if let Some(index) = keys.iter().position(|key| key.trim().is_empty()) {
        let key_path = format!("{}[{index}]", known.path_of("mandatoryAnnotations"));
        ctx.error(&key_path, "an annotation key must not be empty");
        return None;
    }
    Some(LintConfig {
        enabled: section.enabled,
        mandatory_annotations: keys,
    })
}

/// `extensions.search` typed: `enable` and `cve` (kept for CVE scanning, which this build
/// does not have: its queries answer as zot's do with scanning off).
pub(super) fn search(ctx: &mut Ctx, extensions: &ExtensionsConfig) -> Option<SearchConfig> {
    let Some(section) = &extensions.search else {
        return Some(SearchConfig::default());
    };
    let known = Section::read(
        ctx,
        "extensions.search",
        &section.raw,
        &["enable", "cve"],
        &[],
    )?;
    if let Some(cve) = known.raw("cve") {
        if !cve.is_object() && !cve.is_null() {
            ctx.error(
                &known.path_of("cve"),
                format!("expected an object, got {}", describe(cve)),
            );
            return None;
        }
        if section.enabled && cve.is_object() {
            let message = "CVE scanning is not implemented yet: CVE queries answer \"cve search is disabled\"";
            ctx.warn(&known.path_of("cve"), message);
        }
    }
    Some(SearchConfig {
        enabled: section.enabled,
    })
}

/// `extensions.sync` typed (config/sync.rs): `Some(None)` when absent or disabled.
pub(super) fn sync(ctx: &mut Ctx, extensions: &ExtensionsConfig) -> Option<Option<SyncConfig>> {
    super::sync::sync(ctx, extensions)
}

/// zot's smallest scrub interval; berth accepts shorter ones with a warning.
const SCRUB_MIN_INTERVAL: Duration = Duration::from_secs(2 * 3600);

/// `extensions.scrub` typed.
pub(super) fn scrub(ctx: &mut Ctx, extensions: &ExtensionsConfig) -> Option<ScrubConfig> {
    let mut config = ScrubConfig::default();
    let Some(section) = &extensions.scrub else {
        return Some(config);
    };
    config.enabled = section.enabled;
    let known = Section::read(
        ctx,
        "extensions.scrub",
        &section.raw,
        &["enable", "interval", "maxBytesPerSecond", "workers"],
        &[],
    )?;
    let interval = known.positive_duration(ctx, "interval");
    if interval.is_some_and(|interval| interval < SCRUB_MIN_INTERVAL) {
        let message = "shorter than zot's minimum (2h): every pass re-reads every blob";
        ctx.warn(&known.path_of("interval"), message);
    }
    let rate = known.integer(ctx, "maxBytesPerSecond", 0, u64::MAX);
    let workers = known.integer(ctx, "workers", 1, MAX_WORKERS);
    let parsed = |key: &str, ok: bool| !known.has(key) || ok;
    if !(parsed("interval", interval.is_some())
        && parsed("maxBytesPerSecond", rate.is_some())
        && parsed("workers", workers.is_some()))
    {
        return None;
    }
    config.interval = interval.unwrap_or(config.interval);
    config.max_bytes_per_second = rate.unwrap_or(config.max_bytes_per_second);
    config.workers = workers.map(|count| usize::try_from(count).expect("at most 256"));
    Some(config)
}

/// `extensions.ui` typed: zot's only key is `enable`.
pub(super) fn ui(ctx: &mut Ctx, extensions: &ExtensionsConfig) -> Option<UiConfig> {
    let Some(section) = &extensions.ui else {
        return Some(UiConfig::default());
    };
    Section::read(ctx, "extensions.ui", &section.raw, &["enable"], &[])?;
    Some(UiConfig {
        enabled: section.enabled,
    })
}

/// `extensions.trust` typed: zot's `enable`, `cosign`, `notation`; berth's `interval`.
pub(super) fn trust(ctx: &mut Ctx, extensions: &ExtensionsConfig) -> Option<TrustConfig> {
    let mut config = TrustConfig::default();
    let Some(section) = &extensions.trust else {
        return Some(config);
    };
    config.enabled = section.enabled;
    let known = Section::read(
        ctx,
        "extensions.trust",
        &section.raw,
        &["enable", "cosign", "notation", "interval"],
        &[],
    )?;
    let cosign = known.boolean(ctx, "cosign");
    let notation = known.boolean(ctx, "notation");
    let interval = known.positive_duration(ctx, "interval");
    let parsed = |key: &str, ok: bool| !known.has(key) || ok;
    if !(parsed("cosign", cosign.is_some())
        && parsed("notation", notation.is_some())
        && parsed("interval", interval.is_some()))
    {
        return None;
    }
    config.cosign = cosign.unwrap_or(false);
    config.notation = notation.unwrap_or(false);
    config.interval = interval.unwrap_or(config.interval);
    if config.enabled && !config.cosign && !config.notation {
        let message = "neither cosign nor notation is on: no signature is verified";
        ctx.warn(&known.path_of("enable"), message);
    }
    Some(config)
}

/// Extensions that zot enables when their section is present and `enable` is unset.
const ENABLED_WHEN_PRESENT: &[&str] = &["search", "metrics", "scrub", "ui", "trust"];

pub(super) fn extensions(ctx: &mut Ctx, value: &Value) -> Option<ExtensionsConfig> {
    let section = Section::read(ctx, "extensions", value, &ExtensionsConfig::NAMES, &[])?;
    let mut config = ExtensionsConfig::default();
    let mut ok = true;
    for name in ExtensionsConfig::NAMES {
        let Some(raw) = section.raw(name) else {
            continue;
        };
        let path = join("extensions", name);
        let Value::Object(map) = raw else {
            ctx.error(&path, format!("expected an object, got {}", describe(raw)));
            ok = false;
            continue;
        };
        let enable = map
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("enable"));
        let explicit = match enable {
            None | Some((_, Value::Null)) => None,
            Some((_, Value::Bool(flag))) => Some(*flag),
            Some((key, other)) => {
                let message = format!("expected true or false, got {}", describe(other));
                ctx.error(&join(&path, key), message);
                ok = false;
                continue;
            }
        };
        let enabled = match (explicit, name) {
            (Some(flag), _) => flag,
            (None, "sync") => map.iter().any(|(key, value)| {
                key.eq_ignore_ascii_case("registries")
                    && value.as_array().is_some_and(|list| !list.is_empty())
            }),
            (None, name) => ENABLED_WHEN_PRESENT.contains(&name),
        };
        if enabled && !IMPLEMENTED.contains(&name) {
            ctx.warn(
                &path,
                "extension not implemented yet in this build; ignored",
            );
        }
        let slot = config.slot(name).expect("every NAMES entry has a field");
        *slot = Some(ExtensionSection {
            enabled,
            raw: raw.clone(),
        });
    }
    ok.then_some(config)
}
