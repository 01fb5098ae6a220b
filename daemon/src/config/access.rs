//! `http.accessControl`, typed: zot's authorization policies (`groups`, `repositories` with
//! their `policies`, `defaultPolicy` and `anonymousPolicy`, `adminPolicy`, `metrics`).
//!
//! Rules:
//! - Actions are zot's: `read`, `create`, `update`, `delete`. `detectManifestCollision` is
//!   accepted with a warning (not implemented: it is dropped). Any other action is an error at
//!   its key path.
//! - CEL `conditions` (on a policy or on `adminPolicy`) are a config ERROR when non-empty: a
//!   condition only ever narrows a grant, so ignoring one would grant what it denies. berth
//!   refuses to start instead.
//! - Repository patterns are doublestar globs (`*` within a path component, `**` across),
//!   compiled here with the same compiler as quotas and immutable tags, so a bad pattern stops
//!   `berth verify`.
//! - Without `http.auth.htpasswd` (or client certificates: `http.tls.cacert`) every client is
//!   anonymous: the section is enforced all the same (only `anonymousPolicy` entries can
//!   grant), with one warning saying so.

use std::collections::BTreeMap;

use serde_json::Value;

use super::walk::{describe, join, Ctx, Section};
use crate::policy::tag_policy::compile_glob;

/// What a policy may grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Pull and list.
    Read,
    /// Push new content (blobs, manifests, new tags).
    Create,
    /// Move an existing tag.
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One entry of `policies` (or `adminPolicy`): these users and groups may do these actions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub actions: Vec<Action>,
}

/// `repositories[<glob>]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepositoryPolicyConfig {
    /// The doublestar glob over repository names, as written.
    pub pattern: String,
    pub policies: Vec<PolicyConfig>,
    /// Granted to every authenticated user.
    pub default_policy: Vec<Action>,
    /// Granted to anonymous requests.
    pub anonymous_policy: Vec<Action>,
}

/// `metrics`: who may scrape the metrics path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsAccessConfig {
    pub users: Vec<String>,
    /// `["read"]` lets anonymous clients scrape.
    pub anonymous_policy: Vec<Action>,
}

/// `http.accessControl`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessConfig {
    /// Group name -> its users.
    pub groups: BTreeMap<String, Vec<String>>,
    /// In the order written (the decision takes the longest matching pattern).
    pub repositories: Vec<RepositoryPolicyConfig>,
    pub admin_policy: PolicyConfig,
    /// `None`: any authenticated user may scrape (anonymous may not).
    pub metrics: Option<MetricsAccessConfig>,
}

impl AccessConfig {
    /// Whether only `anonymousPolicy` entries grant anything (the only part that works
    /// without authentication).
    pub fn only_anonymous(&self) -> bool {
        let named = |policy: &PolicyConfig| !policy.users.is_empty() || !policy.groups.is_empty();
        self.repositories.iter().all(|repository| {
            repository.default_policy.is_empty() && !repository.policies.iter().any(named)
        }) && !named(&self.admin_policy)
            && self
                .metrics
                .as_ref()
                .is_none_or(|metrics| metrics.users.is_empty())
    }
}

const CEL_REFUSED: &str = "CEL conditions are not implemented in this build; refusing to start \
                           rather than grant what they would deny";
const COLLISION_IGNORED: &str = "detectManifestCollision is not implemented in this build; \
                                 ignored (deleting a manifest by digest that several tags share \
                                 succeeds)";
/// The warning when access control is configured with no way to name a user.
pub(crate) const ANONYMOUS_ONLY_WARNING: &str =
    "enforced without http.auth.htpasswd or http.tls.cacert: every client is anonymous, so only anonymousPolicy \
     (and metrics.anonymousPolicy) grant anything";

/// `http.accessControl`: `Some(None)` when absent, `None` when invalid (errors in `ctx`).
pub(crate) fn access(
    ctx: &mut Ctx,
    http: &Section<'_>,
    htpasswd: bool,
    provider_groups: bool,
) -> Option<Option<AccessConfig>> {
    let Some(value) = http.raw("accessControl") else {
        return Some(None);
    };
    let path = http.path_of("accessControl");
    let section = Section::read(
        ctx,
        &path,
        value,
        &["groups", "repositories", "adminPolicy", "metrics"],
        &[],
    )?;
    let groups = groups(ctx, &section);
    let repositories = repositories(ctx, &section);
    let admin_policy = match section.raw("adminPolicy") {
        Some(value) => policy(ctx, &section.path_of("adminPolicy"), value),
        None => Some(PolicyConfig::default()),
    };
    let metrics = match section.raw("metrics") {
        Some(value) => metrics(ctx, &section.path_of("metrics"), value).map(Some),
        None => Some(None),
    };
    let config = AccessConfig {
        groups: groups?,
        repositories: repositories?,
        admin_policy: admin_policy?,
        metrics: metrics?,
    };
    for repository in &config.repositories {
        for policy in &repository.policies {
            for group in &policy.groups {
                if !provider_groups && !config.groups.contains_key(group) {
                    let at = join(&section.path_of("repositories"), &repository.pattern);
                    ctx.warn(
                        &format!("{at}.policies"),
                        format!(
                            "group {group:?} is not defined in accessControl.groups (and \
                             neither http.auth.ldap nor openid gives groups): it grants nothing"
                        ),
                    );
                }
            }
        }
    }
    if !htpasswd {
        let mut message = ANONYMOUS_ONLY_WARNING.to_owned();
        if !config.only_anonymous() {
            message.push_str(
                "; its users, groups, defaultPolicy, adminPolicy and metrics.users entries \
                 grant nothing",
            );
        }
        ctx.warn(&path, message);
    }
    Some(Some(config))
}

fn groups(ctx: &mut Ctx, section: &Section<'_>) -> Option<BTreeMap<String, Vec<String>>> {
    let Some(value) = section.raw("groups") else {
        return Some(BTreeMap::new());
    };
    let path = section.path_of("groups");
    let Value::Object(map) = value else {
        ctx.error(
            &path,
            format!("expected an object, got {}", describe(value)),
        );
        return None;
    };
    let mut groups = BTreeMap::new();
    let mut ok = true;
    for (name, value) in map {
        let group_path = join(&path, name);
        let Some(group) = Section::read(ctx, &group_path, value, &["users"], &[]) else {
            ok = false;
            continue;
        };
        match group.strings(ctx, "users") {
            Some(users) => {
                groups.insert(name.clone(), users);
            }
            None if group.has("users") => ok = false,
            None => {
                groups.insert(name.clone(), Vec::new());
            }
        }
    }
    ok.then_some(groups)
}

fn repositories(ctx: &mut Ctx, section: &Section<'_>) -> Option<Vec<RepositoryPolicyConfig>> {
    let Some(value) = section.raw("repositories") else {
        return Some(Vec::new());
    };
    let path = section.path_of("repositories");
    let Value::Object(map) = value else {
        ctx.error(
            &path,
            format!("expected an object, got {}", describe(value)),
        );
        return None;
    };
    let mut out = Vec::with_capacity(map.len());
    let mut ok = true;
    for (pattern, value) in map {
        match repository(ctx, &join(&path, pattern), pattern, value) {
            Some(repository) => out.push(repository),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn repository(
    ctx: &mut Ctx,
    path: &str,
    pattern: &str,
    value: &Value,
) -> Option<RepositoryPolicyConfig> {
    let mut ok = true;
    if let Err(error) = compile_glob(pattern) {
        ctx.error(path, format!("bad repository glob: {error}"));
        ok = false;
    }
    let section = Section::read(
        ctx,
        path,
        value,
        &["policies", "defaultPolicy", "anonymousPolicy"],
        &[],
    )?;
    let policies = super::walk::list(ctx, &section, "policies", |ctx, path, value| {
        policy(ctx, path, value)
    });
    let default_policy = actions(ctx, &section, "defaultPolicy");
    let anonymous_policy = actions(ctx, &section, "anonymousPolicy");
    let config = RepositoryPolicyConfig {
        pattern: pattern.to_owned(),
        policies: policies?,
        default_policy: default_policy?,
        anonymous_policy: anonymous_policy?,
    };
    ok.then_some(config)
}

/// A policy (`users`, `groups`, `actions`, `conditions`).
fn policy(ctx: &mut Ctx, path: &str, value: &Value) -> Option<PolicyConfig> {
    let section = Section::read(
        ctx,
        path,
        value,
        &["users", "groups", "actions", "conditions"],
        &[],
    )?;
    let mut ok = true;
    if let Some(conditions) = section.raw("conditions") {
        let empty = matches!(conditions, Value::Array(items) if items.is_empty());
        if !empty {
            ctx.error(&section.path_of("conditions"), CEL_REFUSED);
            ok = false;
        }
    }
    let users = names(ctx, &section, "users");
    let groups = names(ctx, &section, "groups");
    let actions = actions(ctx, &section, "actions");
    let policy = PolicyConfig {
        users: users?,
        groups: groups?,
        actions: actions?,
    };
    ok.then_some(policy)
}

fn metrics(ctx: &mut Ctx, path: &str, value: &Value) -> Option<MetricsAccessConfig> {
    let section = Section::read(ctx, path, value, &["users", "anonymousPolicy"], &[])?;
    let users = names(ctx, &section, "users");
    let anonymous_policy = actions(ctx, &section, "anonymousPolicy");
    Some(MetricsAccessConfig {
        users: users?,
        anonymous_policy: anonymous_policy?,
    })
}

/// A list of strings at `key`; absent = empty.
fn names(ctx: &mut Ctx, section: &Section<'_>, key: &str) -> Option<Vec<String>> {
    match section.strings(ctx, key) {
        Some(names) => Some(names),
        None if section.has(key) => None,
        None => Some(Vec::new()),
    }
}

/// A list of actions at `key`; absent = empty.
fn actions(ctx: &mut Ctx, section: &Section<'_>, key: &str) -> Option<Vec<Action>> {
    let texts = names(ctx, section, key)?;
    let mut out = Vec::with_capacity(texts.len());
    let mut ok = true;
    for (index, text) in texts.iter().enumerate() {
        let at = format!("{}[{index}]", section.path_of(key));
        let action = match text.as_str() {
            "read" => Action::Read,
            "create" => Action::Create,
            "update" => Action::Update,
            "delete" => Action::Delete,
            "detectManifestCollision" => {
                ctx.warn(&at, COLLISION_IGNORED);
                continue;
            }
            other => {
                ctx.error(
                    &at,
                    format!(
                        "unknown action {other:?} (zot's actions: read, create, update, \
                         delete, detectManifestCollision)"
                    ),
                );
                ok = false;
                continue;
            }
        };
        if !out.contains(&action) {
            out.push(action);
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
