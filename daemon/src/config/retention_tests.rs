//! Tests of `storage.gcTimeWindow` and `storage.retention`: parsing to the typed config,
//! defaults, and one error with its key path for each bad input.

use std::path::Path;
use std::time::Duration;

use super::tests::{errors, ok, warned};
use super::*;

/// A config whose `storage` has rootDirectory plus `storage_body`.
fn with_storage(storage_body: &str) -> String {
    format!(r#"{{"storage": {{"rootDirectory": "/data", {storage_body}}}}}"#)
}

/// The single error of a config; fails if there are none or several.
fn single_error(storage_body: &str) -> String {
    let found = errors(&with_storage(storage_body));
    assert_eq!(found.len(), 1, "{storage_body}: {found:#?}");
    found.into_iter().next().unwrap()
}

fn assert_error(storage_body: &str, key_path: &str, message_part: &str) {
    let error = single_error(storage_body);
    assert!(
        error.starts_with(&format!("{key_path}: ")),
        "{storage_body}: expected an error at {key_path}, got {error}"
    );
    assert!(
        error.contains(message_part),
        "{storage_body}: expected {message_part:?} in {error}"
    );
}

fn hours(count: u64) -> Duration {
    Duration::from_secs(count * 3600)
}

#[test]
fn a_full_retention_section_is_typed() {
    let (config, warnings) = ok(&with_storage(
        r#""gcDelay": "2h", "gcTimeWindow": "22:00-02:30",
        "retention": {
          "dryRun": true,
          "delay": "24h",
          "policies": [
            {"repositories": ["infra/*", "tmp/**"], "deleteReferrers": true,
             "deleteUntagged": false,
             "keepTags": [
               {"patterns": ["v2.*", ".*-prod"], "mostRecentlyPushedCount": 10,
                "mostRecentlyPulledCount": 5, "pulledWithin": "720h", "pushedWithin": "1h30m"},
               {}
             ]},
            {"repositories": ["**"]}
          ]
        }"#,
    ));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        config.storage.gc_time_window,
        Some(TimeWindow {
            start_min: 22 * 60,
            end_min: 2 * 60 + 30
        })
    );
    let expected = RetentionConfig {
        dry_run: true,
        delay: hours(24),
        policies: vec![
            RetentionPolicyConfig {
                repositories: vec!["infra/*".into(), "tmp/**".into()],
                delete_referrers: true,
                delete_untagged: false,
                keep_tags: vec![
                    KeepTagsConfig {
                        patterns: vec!["v2.*".into(), ".*-prod".into()],
                        pulled_within: Some(hours(720)),
                        pushed_within: Some(Duration::from_secs(5400)),
                        most_recently_pushed_count: Some(10),
                        most_recently_pulled_count: Some(5),
                    },
                    KeepTagsConfig::default(),
                ],
            },
            RetentionPolicyConfig {
                repositories: vec!["**".into()],
                delete_referrers: false,
                delete_untagged: true,
                keep_tags: Vec::new(),
            },
        ],
    };
    assert_eq!(config.storage.retention, Some(expected));
}

#[test]
fn defaults() {
    let (config, _) = ok(&with_storage(r#""gcDelay": "3h", "retention": {}"#));
    let retention = config.storage.retention.expect("present");
    assert!(!retention.dry_run);
    // retention.delay defaults to gcDelay (zot PR #3447).
    assert_eq!(retention.delay, hours(3));
    assert!(retention.policies.is_empty());
    let (config, _) = ok(&with_storage(r#""retention": {"policies": []}"#));
    assert_eq!(config.storage.retention.unwrap().delay, hours(1));
    let (config, _) = ok(&with_storage(r#""gcDelay": "0s""#));
    assert_eq!(config.storage.retention, None);
    assert_eq!(config.storage.gc_time_window, None);
    // YAML's `retention:` with no value is absent.
    let (config, _) = ok(&with_storage(r#""retention": null, "gcTimeWindow": null"#));
    assert_eq!(config.storage.retention, None);
    assert_eq!(config.storage.gc_time_window, None);
}

#[test]
fn the_zot_example_no_longer_warns_about_retention() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/example-zot-full.json");
    let (config, warnings) = load(Some(&path)).unwrap_or_else(|errors| panic!("{errors}"));
    assert!(!warned(&warnings, "storage.retention"), "{warnings:?}");
    assert!(!warned(&warnings, "storage.gcTimeWindow"), "{warnings:?}");
    assert!(
        !warnings
            .iter()
            .any(|warning| warning.key_path.starts_with("storage.retention")),
        "{warnings:?}"
    );
    assert_eq!(
        config.storage.gc_time_window,
        Some(TimeWindow {
            start_min: 60,
            end_min: 360
        })
    );
    let retention = config.storage.retention.expect("the example has retention");
    assert_eq!(retention.delay, hours(24));
    assert_eq!(retention.policies.len(), 2);
    assert_eq!(retention.policies[0].repositories, ["ci/**"]);
    assert_eq!(
        retention.policies[0].keep_tags[0].most_recently_pushed_count,
        Some(20)
    );
    assert_eq!(retention.policies[1].keep_tags[0].patterns, [".*"]);
}

#[test]
fn keep_untagged_warns_and_case_folded_keys_are_accepted() {
    let (config, warnings) = ok(&with_storage(
        r#""retention": {"DryRun": true, "policies": [
            {"repositories": ["**"], "keepUntagged": {"pulledWithin": "1h"}}]}"#,
    ));
    assert!(config.storage.retention.unwrap().dry_run);
    assert!(
        warned(&warnings, "storage.retention.DryRun"),
        "{warnings:?}"
    );
    assert!(
        warned(&warnings, "storage.retention.policies[0].keepUntagged"),
        "{warnings:?}"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn each_bad_retention_value_is_one_error_at_its_path() {
    let table: &[(&str, &str, &str)] = &[
        (
            r#""retention": "yes""#,
            "storage.retention",
            "expected an object",
        ),
        (
            r#""retention": {"dryRun": "no"}"#,
            "storage.retention.dryRun",
            "expected true or false",
        ),
        (
            r#""retention": {"delay": "1d"}"#,
            "storage.retention.delay",
            "unknown unit",
        ),
        (
            r#""retention": {"colour": 1}"#,
            "storage.retention.colour",
            "unknown key",
        ),
        (
            r#""retention": {"policies": {}}"#,
            "storage.retention.policies",
            "expected a list",
        ),
        (
            r#""retention": {"policies": [3]}"#,
            "storage.retention.policies[0]",
            "expected an object",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"]}, {"keepTags": []}]}"#,
            "storage.retention.policies[1].repositories",
            "required",
        ),
        (
            r#""retention": {"policies": [{"repositories": []}]}"#,
            "storage.retention.policies[0].repositories",
            "must not be empty",
        ),
        (
            r#""retention": {"policies": [{"repositories": "**"}]}"#,
            "storage.retention.policies[0].repositories",
            "expected a list of strings",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["ok/**", "a["]}]}"#,
            "storage.retention.policies[0].repositories[1]",
            "bad repository glob",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"], "deleteUntagged": 1}]}"#,
            "storage.retention.policies[0].deleteUntagged",
            "expected true or false",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"], "deleteReferrers": "x"}]}"#,
            "storage.retention.policies[0].deleteReferrers",
            "expected true or false",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"], "tags": []}]}"#,
            "storage.retention.policies[0].tags",
            "unknown key",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"], "keepTags": {}}]}"#,
            "storage.retention.policies[0].keepTags",
            "expected a list",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"],
                "keepTags": [{"patterns": ["v.*"]}, {"patterns": ["(unclosed"]}]}]}"#,
            "storage.retention.policies[0].keepTags[1].patterns[0]",
            "bad regular expression",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"],
                "keepTags": [{"patterns": "v.*"}]}]}"#,
            "storage.retention.policies[0].keepTags[0].patterns",
            "expected a list of strings",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"],
                "keepTags": [{"pulledWithin": "30d"}]}]}"#,
            "storage.retention.policies[0].keepTags[0].pulledWithin",
            "unknown unit",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"],
                "keepTags": [{"pushedWithin": 24}]}]}"#,
            "storage.retention.policies[0].keepTags[0].pushedWithin",
            "expected a duration",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"],
                "keepTags": [{"mostRecentlyPushedCount": -1}]}]}"#,
            "storage.retention.policies[0].keepTags[0].mostRecentlyPushedCount",
            "expected an integer",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"],
                "keepTags": [{"mostRecentlyPulledCount": "5"}]}]}"#,
            "storage.retention.policies[0].keepTags[0].mostRecentlyPulledCount",
            "expected an integer",
        ),
        (
            r#""retention": {"policies": [{"repositories": ["**"],
                "keepTags": [{"pattern": ["v"]}]}]}"#,
            "storage.retention.policies[0].keepTags[0].pattern",
            "unknown key",
        ),
    ];
    for (body, key_path, message_part) in table {
        assert_error(body, key_path, message_part);
    }
}

#[test]
fn every_retention_problem_is_reported_at_once() {
    let found = errors(&with_storage(
        r#""gcTimeWindow": "1-2", "retention": {"delay": "x", "policies": [
            {"repositories": ["a["], "keepTags": [{"patterns": ["("], "pulledWithin": "1d"}]},
            {}]}"#,
    ));
    let expected = [
        "storage.gcTimeWindow: ",
        "storage.retention.delay: ",
        "storage.retention.policies[0].repositories[0]: ",
        "storage.retention.policies[0].keepTags[0].patterns[0]: ",
        "storage.retention.policies[0].keepTags[0].pulledWithin: ",
        "storage.retention.policies[1].repositories: ",
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for prefix in expected {
        assert!(
            found.iter().any(|error| error.starts_with(prefix)),
            "{prefix}: {found:#?}"
        );
    }
}

#[test]
fn bad_time_windows() {
    for (body, message_part) in [
        (r#""gcTimeWindow": "01:00-01:00""#, "same time"),
        (r#""gcTimeWindow": "24:00-01:00""#, "HH:MM-HH:MM"),
        (r#""gcTimeWindow": "01:60-02:00""#, "HH:MM-HH:MM"),
        (r#""gcTimeWindow": "0100-0200""#, "HH:MM-HH:MM"),
        (r#""gcTimeWindow": "01:00""#, "HH:MM-HH:MM"),
        (r#""gcTimeWindow": "01:0-02:00""#, "HH:MM-HH:MM"),
        (r#""gcTimeWindow": "-1:00-02:00""#, "HH:MM-HH:MM"),
        (r#""gcTimeWindow": """#, "HH:MM-HH:MM"),
        (r#""gcTimeWindow": 5"#, "expected a string"),
    ] {
        assert_error(body, "storage.gcTimeWindow", message_part);
    }
}

#[test]
fn time_window_parsing_and_membership() {
    let at = |hour: u64, minute: u64| 20_000 * 86_400 + hour * 3600 + minute * 60;
    let day = TimeWindow::parse("01:00-06:00").unwrap();
    assert_eq!(
        day,
        TimeWindow {
            start_min: 60,
            end_min: 360
        }
    );
    assert!(!day.contains(at(0, 59)));
    assert!(day.contains(at(1, 0)));
    assert!(day.contains(at(5, 59) + 59));
    assert!(!day.contains(at(6, 0)), "the end is exclusive");
    assert!(!day.contains(at(23, 0)));

    let night = TimeWindow::parse("22:00-02:00").unwrap();
    assert!(night.contains(at(22, 0)));
    assert!(night.contains(at(23, 59)));
    assert!(night.contains(at(0, 0)));
    assert!(night.contains(at(1, 59)));
    assert!(!night.contains(at(2, 0)));
    assert!(!night.contains(at(12, 0)));
    assert!(!night.contains(at(21, 59)));

    let to_midnight = TimeWindow::parse("23:30-00:00").unwrap();
    assert!(to_midnight.contains(at(23, 45)));
    assert!(!to_midnight.contains(at(0, 0)));
    let from_midnight = TimeWindow::parse("0:00-0:30").unwrap();
    assert!(from_midnight.contains(at(0, 0)));
    assert!(!from_midnight.contains(at(0, 30)));
    assert_eq!(
        TimeWindow::parse(" 01:00 - 02:00 ").map(|window| window.end_min),
        Ok(120)
    );
}

#[test]
fn retention_and_window_warn_when_gc_is_off() {
    let (config, warnings) = ok(&with_storage(
        r#""gc": false, "gcTimeWindow": "01:00-02:00", "retention": {"policies": []}"#,
    ));
    assert!(config.storage.retention.is_some());
    assert!(warned(&warnings, "storage.retention"), "{warnings:?}");
    assert!(warned(&warnings, "storage.gcTimeWindow"), "{warnings:?}");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let (_, warnings) = ok(&with_storage(r#""gc": true, "retention": {}"#));
    assert!(warnings.is_empty(), "{warnings:?}");
}
