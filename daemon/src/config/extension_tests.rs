//! Config tests of berth's own keys and of the extensions berth implements: metrics, lint,
//! scrub, `storage.immutableTags`, `storage.quotas`.

use std::time::Duration;

use super::tests::{errors, ok, warned};
use super::*;

#[test]
fn metrics_settings_are_typed_and_checked() {
    let (config, warnings) = ok(r#"{"storage": {"rootDirectory": "/d"}, "extensions": {
        "metrics": {"prometheus": {"path": "/internal/metrics", "namespace": "berth"}}}}"#);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        config.metrics,
        MetricsConfig {
            enabled: true,
            path: "/internal/metrics".into(),
            namespace: "berth".into()
        }
    );
    let (config, _) = ok(r#"{"storage": {"rootDirectory": "/d"}}"#);
    assert!(!config.metrics.enabled);
    let reported = errors(
        r#"{"storage": {"rootDirectory": "/d"}, "extensions": {
        "metrics": {"prometheus": {"path": "/v2/metrics", "namespace": "prom", "x": 1}}}}"#,
    )
    .join("\n");
    for expected in [
        "extensions.metrics.prometheus.path: expected an absolute path outside /v2/",
        "extensions.metrics.prometheus.namespace: expected \"zot\" or \"berth\", got \"prom\"",
        "extensions.metrics.prometheus.x: unknown key",
    ] {
        assert!(reported.contains(expected), "{expected} not in {reported}");
    }
    for path in ["metrics", "/readyz", "/m?x"] {
        let text = format!(
            r#"{{"storage": {{"rootDirectory": "/d"}},
                "extensions": {{"metrics": {{"prometheus": {{"path": "{path}"}}}}}}}}"#
        );
        assert!(
            errors(&text).join("\n").contains("prometheus.path"),
            "{path}"
        );
    }
    let (config, _) =
        ok(r#"{"storage": {"rootDirectory": "/d"}, "http": {"shutdownDelay": "2s"}}"#);
    assert_eq!(config.http.shutdown_delay, Duration::from_secs(2));
}

#[test]
fn lint_settings_are_typed_and_checked() {
    let (config, warnings) = ok(r#"{"storage": {"rootDirectory": "/d"}, "extensions": {
        "lint": {"enable": true, "mandatoryAnnotations": ["a", "b.c"]}}}"#);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        config.lint,
        LintConfig {
            enabled: true,
            mandatory_annotations: vec!["a".into(), "b.c".into()]
        }
    );
    // zot's rule: lint is on only with "enable": true.
    let (config, _) = ok(r#"{"storage": {"rootDirectory": "/d"},
                             "extensions": {"lint": {"mandatoryAnnotations": ["a"]}}}"#);
    assert!(!config.lint.enabled);
    for (lint, expected) in [
        (
            r#"{"mandatoryAnnotations": "a"}"#,
            "extensions.lint.mandatoryAnnotations: expected a list",
        ),
        (
            r#"{"mandatoryAnnotations": ["a", " "]}"#,
            "mandatoryAnnotations[1]: an annotation key must not be empty",
        ),
        (
            r#"{"mandatoryAnnotations": [1]}"#,
            "mandatoryAnnotations[0]: expected a string",
        ),
        (r#"{"x": 1}"#, "extensions.lint.x: unknown key"),
    ] {
        let text = format!(
            r#"{{"storage": {{"rootDirectory": "/d"}}, "extensions": {{"lint": {lint}}}}}"#
        );
        let reported = errors(&text).join("\n");
        assert!(reported.contains(expected), "{expected} not in {reported}");
    }
}

#[test]
fn immutable_tag_patterns_are_checked_at_load() {
    let (config, _) = ok(r#"{"storage": {"rootDirectory": "/d",
                              "immutableTags": ["v*", "prod/**:release-*"]}}"#);
    assert_eq!(config.storage.immutable_tags, ["v*", "prod/**:release-*"]);
    let reported = errors(r#"{"storage": {"rootDirectory": "/d", "immutableTags": ["a["]}}"#);
    assert!(
        reported
            .iter()
            .any(|e| e.starts_with("storage.immutableTags: bad glob \"a[\"")),
        "{reported:?}"
    );
    let reported = errors(r#"{"storage": {"rootDirectory": "/d", "immutableTags": "v*"}}"#);
    assert!(
        reported
            .iter()
            .any(|e| e.starts_with("storage.immutableTags: expected a list")),
        "{reported:?}"
    );
}

#[test]
fn scrub_settings_are_typed_with_zot_defaults() {
    let (config, warnings) = ok(r#"{"storage": {"rootDirectory": "/d"},
        "extensions": {"scrub": {"interval": "30m", "maxBytesPerSecond": 0, "workers": 3}}}"#);
    assert_eq!(
        config.scrub,
        ScrubConfig {
            enabled: true,
            interval: Duration::from_secs(1800),
            max_bytes_per_second: 0,
            workers: Some(3),
        }
    );
    assert!(
        warned(&warnings, "extensions.scrub.interval"),
        "{warnings:?}"
    );
    let (config, _) = ok(r#"{"storage": {"rootDirectory": "/d"}, "extensions": {"scrub": {}}}"#);
    assert_eq!(config.scrub.interval, Duration::from_secs(24 * 3600));
    assert!(config.scrub.enabled);
    let reported = errors(
        r#"{"storage": {"rootDirectory": "/d"},
        "extensions": {"scrub": {"interval": "0s", "workers": 0, "rate": 1}}}"#,
    )
    .join("\n");
    for key in ["scrub.interval", "scrub.workers", "scrub.rate: unknown key"] {
        assert!(reported.contains(key), "{key} not in {reported}");
    }
}

#[test]
fn quotas_are_typed_and_checked() {
    let (config, _) = ok(r#"{"storage": {"rootDirectory": "/d", "quotas": {
        "team/**": {"maxBytes": 1000, "maxRepositories": 5}, "solo": {"maxRepositories": 1}}}}"#);
    let mut quotas = config.storage.quotas.clone();
    quotas.sort_by(|a, b| a.pattern.cmp(&b.pattern));
    assert_eq!(
        quotas,
        vec![
            QuotaConfig {
                pattern: "solo".into(),
                max_bytes: None,
                max_repositories: Some(1)
            },
            QuotaConfig {
                pattern: "team/**".into(),
                max_bytes: Some(1000),
                max_repositories: Some(5)
            },
        ]
    );
    let reported = errors(
        r#"{"storage": {"rootDirectory": "/d", "quotas": {
        "a[": {"maxBytes": 1}, "b": {}, "c": {"maxBytes": -1}, "d": {"maxFiles": 1}}}}"#,
    )
    .join("\n");
    for expected in [
        "storage.quotas[\"a[\"]: bad repository glob",
        "storage.quotas.b: needs maxBytes, maxRepositories or both",
        "storage.quotas.c.maxBytes",
        "storage.quotas.d.maxFiles: unknown key",
    ] {
        assert!(reported.contains(expected), "{expected} not in {reported}");
    }
    let reported = errors(r#"{"storage": {"rootDirectory": "/d", "quotas": []}}"#).join("\n");
    assert!(
        reported.contains("storage.quotas: expected an object"),
        "{reported}"
    );
}
