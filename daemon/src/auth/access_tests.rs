//! Tests of the access decision (auth/access.rs): zot's evaluation order.

use std::collections::BTreeMap;

use super::AccessControl;
use crate::config::{
    AccessConfig, Action, MetricsAccessConfig, PolicyConfig, RepositoryPolicyConfig,
};

const ALL: [Action; 4] = [Action::Read, Action::Create, Action::Update, Action::Delete];

fn policy(users: &[&str], groups: &[&str], actions: &[Action]) -> PolicyConfig {
    PolicyConfig {
        users: users.iter().map(|user| user.to_string()).collect(),
        groups: groups.iter().map(|group| group.to_string()).collect(),
        actions: actions.to_vec(),
    }
}

fn repository(
    pattern: &str,
    policies: Vec<PolicyConfig>,
    default_policy: &[Action],
    anonymous_policy: &[Action],
) -> RepositoryPolicyConfig {
    RepositoryPolicyConfig {
        pattern: pattern.into(),
        policies,
        default_policy: default_policy.to_vec(),
        anonymous_policy: anonymous_policy.to_vec(),
    }
}

fn control() -> AccessControl {
    let mut groups = BTreeMap::new();
    groups.insert("devs".to_owned(), vec!["dave".to_owned()]);
    groups.insert("ops".to_owned(), vec!["olga".to_owned()]);
    AccessControl::new(&AccessConfig {
        groups,
        repositories: vec![
            repository(
                "**",
                vec![policy(&["alice"], &[], &ALL)],
                &[Action::Read],
                &[Action::Read],
            ),
            repository(
                "team/*",
                vec![policy(&["bob"], &["devs"], &[Action::Read, Action::Create])],
                &[],
                &[],
            ),
            repository("team/secret/**", vec![], &[], &[]),
        ],
        admin_policy: policy(&["root"], &["ops"], &[Action::Delete]),
        metrics: None,
    })
    .expect("globs compile")
}

#[test]
fn user_group_default_and_anonymous_policies() {
    let access = control();
    // `**`: alice has everything, any user reads, anonymous reads.
    assert!(access.can(Some("alice"), Action::Delete, "lib/x"));
    assert!(access.can(Some("carol"), Action::Read, "lib/x"));
    assert!(!access.can(Some("carol"), Action::Create, "lib/x"));
    assert!(access.can(None, Action::Read, "lib/x"));
    assert!(!access.can(None, Action::Create, "lib/x"));
    // `team/*` is longer than `**`: it alone decides; group devs grants dave.
    assert!(access.can(Some("bob"), Action::Create, "team/app"));
    assert!(access.can(Some("dave"), Action::Create, "team/app"));
    assert!(!access.can(Some("dave"), Action::Update, "team/app"));
    assert!(!access.can(Some("alice"), Action::Read, "team/app"));
    assert!(!access.can(None, Action::Read, "team/app"));
    // `*` stays within one component: team/app/sub falls back to `**`.
    assert!(access.can(Some("alice"), Action::Read, "team/app/sub"));
    assert!(!access.can(Some("bob"), Action::Create, "team/app/sub"));
}

#[test]
fn the_longest_pattern_wins_and_admins_pass_where_it_denies() {
    let access = control();
    assert!(!access.can(Some("alice"), Action::Read, "team/secret/x"));
    assert!(access.can(Some("root"), Action::Delete, "team/secret/x"));
    assert!(!access.can(Some("root"), Action::Read, "team/secret/x"));
    // Through a group.
    assert!(access.can(Some("olga"), Action::Delete, "team/secret/x"));
    assert!(access.is_admin(Some("olga")));
    assert!(!access.is_admin(Some("alice")));
    assert!(!access.is_admin(None));
}

#[test]
fn no_matching_glob_is_denied() {
    let access = AccessControl::new(&AccessConfig {
        repositories: vec![repository("only/*", vec![], &ALL, &ALL)],
        ..AccessConfig::default()
    })
    .expect("compiles");
    assert!(access.can(Some("x"), Action::Read, "only/this"));
    assert!(!access.can(Some("x"), Action::Read, "other"));
    assert!(!access.can(None, Action::Read, "other"));
}

#[test]
fn metrics_access() {
    let access = control();
    assert!(access.can_scrape(Some("anyone")));
    assert!(!access.can_scrape(None));
    let listed = AccessControl::new(&AccessConfig {
        metrics: Some(MetricsAccessConfig {
            users: vec!["prometheus".into()],
            anonymous_policy: vec![Action::Read],
        }),
        ..AccessConfig::default()
    })
    .expect("compiles");
    assert!(listed.can_scrape(Some("prometheus")));
    assert!(!listed.can_scrape(Some("alice")));
    assert!(listed.can_scrape(None));
}
