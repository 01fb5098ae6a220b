//! Tests of `http.accessControl` (config/access.rs): the typed section, its errors and
//! warnings.

use serde_json::{json, Value};

use super::ANONYMOUS_ONLY_WARNING;
use crate::config::{parse_str, AccessConfig, Action, ConfigErrors, PolicyConfig, Warning};

const BCRYPT: &str = "$2b$04$LPyfSGt4aZ8h3Yd5iJdA3ublJNFaNH5XQFSaR1oDB/obZy1D.uWFC";

/// Loads a config with `accessControl`, behind htpasswd unless `htpasswd` is false.
fn load(access: Value, htpasswd: bool) -> Result<(AccessConfig, Vec<Warning>), ConfigErrors> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, format!("alice:{BCRYPT}\n")).expect("write");
    let mut http = json!({"accessControl": access});
    if htpasswd {
        http["auth"] = json!({"htpasswd": {"path": file}});
    }
    let text = json!({"storage": {"rootDirectory": "/d"}, "http": http});
    let (config, warnings) = parse_str(&text.to_string())?;
    Ok((config.http.access.expect("access is set"), warnings))
}

fn errors(access: Value) -> Vec<(String, String)> {
    let Err(errors) = load(access, true) else {
        panic!("config was accepted");
    };
    errors
        .0
        .into_iter()
        .map(|error| (error.key_path, error.message))
        .collect()
}

#[test]
fn the_whole_section_is_typed() {
    let (access, warnings) = load(
        json!({
            "groups": {"ci": {"users": ["jenkins", "gha"]}},
            "repositories": {
                "**": {"defaultPolicy": ["read"], "anonymousPolicy": ["read"]},
                "ci/**": {
                    "policies": [{"groups": ["ci"], "users": ["bob"], "actions": ["read", "create"]}],
                    "defaultPolicy": ["read", "detectManifestCollision"],
                },
            },
            "adminPolicy": {"users": ["admin"], "actions": ["read", "delete"], "conditions": []},
            "metrics": {"users": ["prometheus"], "anonymousPolicy": ["read"]},
        }),
        true,
    )
    .expect("valid");
    assert_eq!(access.groups["ci"], vec!["jenkins", "gha"]);
    assert_eq!(access.repositories.len(), 2);
    let ci = access
        .repositories
        .iter()
        .find(|repository| repository.pattern == "ci/**")
        .expect("ci/**");
    assert_eq!(
        ci.policies,
        vec![PolicyConfig {
            users: vec!["bob".into()],
            groups: vec!["ci".into()],
            actions: vec![Action::Read, Action::Create],
        }]
    );
    assert_eq!(ci.default_policy, vec![Action::Read]);
    assert!(ci.anonymous_policy.is_empty());
    assert_eq!(
        access.admin_policy.actions,
        vec![Action::Read, Action::Delete]
    );
    let metrics = access.metrics.clone().expect("metrics");
    assert_eq!(metrics.users, vec!["prometheus"]);
    assert_eq!(metrics.anonymous_policy, vec![Action::Read]);
    assert!(!access.only_anonymous());
    let collision: Vec<_> = warnings
        .iter()
        .filter(|warning| warning.message.contains("detectManifestCollision"))
        .collect();
    assert_eq!(collision.len(), 1, "{warnings:?}");
    assert!(
        collision[0].key_path.ends_with("defaultPolicy[1]"),
        "{}",
        collision[0].key_path
    );
}

#[test]
fn conditions_stop_the_load() {
    let condition = json!([{"expression": "req.user.username == 'x'", "message": "no"}]);
    let found = errors(json!({
        "repositories": {"**": {"policies": [{"users": ["alice"], "actions": ["read"], "conditions": condition}]}},
        "adminPolicy": {"users": ["alice"], "actions": ["read"], "conditions": condition},
    }));
    let mut cel: Vec<_> = found
        .iter()
        .filter(|(_, message)| message.contains("CEL conditions are not implemented"))
        .map(|(path, _)| path.as_str())
        .collect();
    cel.sort_unstable();
    assert_eq!(
        cel,
        vec![
            "http.accessControl.adminPolicy.conditions",
            "http.accessControl.repositories[\"**\"].policies[0].conditions",
        ],
        "{found:?}"
    );
}

#[test]
fn unknown_actions_keys_and_bad_globs_are_errors_with_their_path() {
    let found = errors(json!({
        "repositories": {
            "a/**": {"defaultPolicy": ["read", "push"]},
            "b/[": {"anonymousPolicy": ["read"]},
            "c": {"policy": []},
        },
        "adminPolicy": {"users": "alice"},
        "extra": 1,
    }));
    let paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
    for expected in [
        "http.accessControl.repositories[\"a/**\"].defaultPolicy[1]",
        "http.accessControl.repositories[\"b/[\"]",
        "http.accessControl.repositories.c.policy",
        "http.accessControl.adminPolicy.users",
        "http.accessControl.extra",
    ] {
        assert!(paths.contains(&expected), "{expected} not in {found:?}");
    }
    let push = found
        .iter()
        .find(|(path, _)| path.ends_with("defaultPolicy[1]"))
        .expect("push");
    assert!(push.1.contains("\"push\""), "{}", push.1);
}

#[test]
fn without_htpasswd_it_is_enforced_for_anonymous_with_one_warning() {
    let (access, warnings) = load(
        json!({"repositories": {"**": {"anonymousPolicy": ["read"]}}}),
        false,
    )
    .expect("valid");
    assert!(access.only_anonymous());
    let at: Vec<_> = warnings
        .iter()
        .filter(|warning| warning.key_path == "http.accessControl")
        .collect();
    assert_eq!(at.len(), 1, "{warnings:?}");
    assert_eq!(at[0].message, ANONYMOUS_ONLY_WARNING);
    let (_, warnings) = load(
        json!({"repositories": {"**": {"anonymousPolicy": ["read"]}}}),
        true,
    )
    .expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    // Entries that need a user are named as granting nothing.
    let (access, warnings) = load(
        json!({"repositories": {"**": {"defaultPolicy": ["read"]}}}),
        false,
    )
    .expect("valid");
    assert!(!access.only_anonymous());
    let at: Vec<_> = warnings
        .iter()
        .filter(|warning| warning.key_path == "http.accessControl")
        .collect();
    assert_eq!(at.len(), 1, "{warnings:?}");
    assert!(
        at[0].message.ends_with("grant nothing"),
        "{}",
        at[0].message
    );
}

#[test]
fn an_undefined_group_warns() {
    let (_, warnings) = load(
        json!({"repositories": {"**": {"policies": [{"groups": ["ldap-devs"], "actions": ["read"]}]}}}),
        true,
    )
    .expect("valid");
    assert!(
        warnings
            .iter()
            .any(|warning| warning.message.contains("\"ldap-devs\"")),
        "{warnings:?}"
    );
}
