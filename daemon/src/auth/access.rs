//! Authorization (`http.accessControl`): who may do which action on which repository, the
//! action a request needs, and the answer when it may not.
//!
//! Rules (zot's evaluation, §5.3 of the zot notes):
//! - The policy group of a repository is the one whose doublestar glob matches it and is the
//!   longest pattern (on a tie, the first written). User policies are checked, then group
//!   policies, then `defaultPolicy` (authenticated) or `anonymousPolicy` (anonymous). When
//!   that denies, `adminPolicy` grants if the user or one of their groups is listed and the
//!   action is in its actions. No matching glob: denied (admins still pass).
//! - Methods: GET/HEAD read; POST/PUT/PATCH create; DELETE delete; a manifest PUT that names
//!   a tag that already exists (the reference or a `?tag=`) is update instead.
//! - A refused anonymous request gets the 401 Basic challenge when htpasswd is on (so clients
//!   send credentials), the Bearer challenge with `insufficient_scope` when bearer is on (an
//!   anonymous token), 403 DENIED otherwise; a refused user gets 403 DENIED.
//! - `/v2/` itself: an anonymous request gets the 401 challenge when htpasswd is on (a Docker
//!   client only sends credentials after one); anyone admitted gets 200.
//! - An extension's route says what it needs ([`Need`]); berth's extension endpoints (scrub
//!   report, sync status) are for admins only: a user or group of `adminPolicy` with at least
//!   one action. The metrics path follows `accessControl.metrics`.
//! - The check between a tag's existence and the manifest commit is not atomic: two pushes of
//!   the same new tag by a create-only user may both pass as create.

use std::collections::HashMap;

use berth_storage::oci::{RepoName, Tag};
use globset::GlobMatcher;
use hyper::{Method, Response};

use crate::api::{body::Body, error::ApiError, router::Endpoint, Ctx, Query};
use crate::config::{AccessConfig, Action, MetricsAccessConfig, PolicyConfig};
use crate::policy::tag_policy::compile_glob;

/// The compiled `http.accessControl`.
pub struct AccessControl {
    /// user -> the groups that list them.
    groups: HashMap<String, Vec<String>>,
    /// Sorted longest pattern first (stable: ties keep the written order).
    repositories: Vec<PolicyGroup>,
    admin: PolicyConfig,
    metrics: Option<MetricsAccessConfig>,
    /// The groups LDAP logins gave their users (beside `groups`).
    directory: std::sync::Arc<super::ldap::DirectoryGroups>,
}

struct PolicyGroup {
    glob: GlobMatcher,
    policies: Vec<PolicyConfig>,
    default_policy: Vec<Action>,
    anonymous_policy: Vec<Action>,
}

impl AccessControl {
    /// Compiles the config (its globs were checked at load; this fails only on a bad glob).
    pub fn new(config: &AccessConfig) -> Result<AccessControl, String> {
        AccessControl::with_directory_groups(config, Default::default())
    }

    /// [`AccessControl::new`], with the groups a directory gives users at login.
    pub fn with_directory_groups(
        config: &AccessConfig,
        directory: std::sync::Arc<super::ldap::DirectoryGroups>,
    ) -> Result<AccessControl, String> {
        let mut groups: HashMap<String, Vec<String>> = HashMap::new();
        for (group, users) in &config.groups {
            for user in users {
                groups.entry(user.clone()).or_default().push(group.clone());
            }
        }
        let mut written: Vec<(usize, PolicyGroup)> = Vec::new();
        for repository in &config.repositories {
            let glob = compile_glob(&repository.pattern)
                .map_err(|error| format!("bad glob {:?}: {error}", repository.pattern))?;
            let group = PolicyGroup {
                glob,
                policies: repository.policies.clone(),
                default_policy: repository.default_policy.clone(),
                anonymous_policy: repository.anonymous_policy.clone(),
            };
            written.push((repository.pattern.len(), group));
        }
        written.sort_by_key(|(length, _)| std::cmp::Reverse(*length));
        Ok(AccessControl {
            groups,
            repositories: written.into_iter().map(|(_, group)| group).collect(),
            admin: config.admin_policy.clone(),
            metrics: config.metrics.clone(),
            directory,
        })
    }

    /// The config's groups of `user`, then the directory's.
    fn groups_of(&self, user: Option<&str>) -> Vec<String> {
        let Some(user) = user else {
            return Vec::new();
        };
        let mut groups = self.groups.get(user).cloned().unwrap_or_default();
        groups.extend(self.directory.of(user).iter().cloned());
        groups
    }

    /// Whether `user` (`None`: anonymous) may do `action` on `repo`.
    pub fn can(&self, user: Option<&str>, action: Action, repo: &str) -> bool {
        let groups = self.groups_of(user);
        let group = self
            .repositories
            .iter()
            .find(|group| group.glob.is_match(repo));
        let granted = group.is_some_and(|group| group.permits(user, &groups, action));
        granted || (self.is_admin(user) && self.admin.actions.contains(&action))
    }

    /// Whether `user` or one of their groups is in `adminPolicy` (anonymous never is).
    pub fn is_admin(&self, user: Option<&str>) -> bool {
        let Some(name) = user else {
            return false;
        };
        self.admin.users.iter().any(|admin| admin == name)
            || self
                .groups_of(user)
                .iter()
                .any(|group| self.admin.groups.contains(group))
    }

    /// The metrics path: `metrics.users` and `metrics.anonymousPolicy` when set, else any
    /// authenticated user.
    pub fn can_scrape(&self, user: Option<&str>) -> bool {
        match (&self.metrics, user) {
            (None, user) => user.is_some(),
            (Some(metrics), Some(name)) => metrics.users.iter().any(|listed| listed == name),
            (Some(metrics), None) => metrics.anonymous_policy.contains(&Action::Read),
        }
    }
}

impl PolicyGroup {
    fn permits(&self, user: Option<&str>, groups: &[String], action: Action) -> bool {
        let listed = |policy: &&PolicyConfig| policy.actions.contains(&action);
        if let Some(name) = user {
            let mut policies = self.policies.iter().filter(listed);
            let by_user = policies
                .clone()
                .any(|policy| policy.users.iter().any(|listed| listed == name));
            if by_user || policies.any(|policy| policy.groups.iter().any(|g| groups.contains(g))) {
                return true;
            }
            self.default_policy.contains(&action)
        } else {
            self.anonymous_policy.contains(&action)
        }
    }
}

/// What a request needs from `http.accessControl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    Nothing,
    /// Nothing, and no credentials either when htpasswd is on: zot's mgmt, which zui reads
    /// to draw its login page before anyone has logged in. Credentials that are sent are
    /// still checked.
    Public,
    /// `/v2/`: anonymous gets the challenge when htpasswd is on.
    Base,
    /// A user or group of `adminPolicy` with at least one action.
    Admin,
    /// The metrics path: `accessControl.metrics` ([`AccessControl::can_scrape`]).
    Scrape,
    Action(Action, RepoName),
}

/// Checks an OCI request against `http.accessControl`; `Some(response)` is the refusal to
/// send.
pub async fn check(
    ctx: &Ctx,
    user: Option<&str>,
    endpoint: &Endpoint,
    method: &Method,
    query: &Query,
    head_only: bool,
) -> Result<Option<Response<Body>>, ApiError> {
    // Without access control there is nothing to ask (nor a tag to look up).
    if ctx.access.is_none() {
        return Ok(None);
    }
    let need = need(ctx, endpoint, method, query).await?;
    Ok(permit(ctx, user, &need, head_only))
}

/// Checks `need` against `http.accessControl`; `Some(response)` is the refusal to send.
pub fn permit(
    ctx: &Ctx,
    user: Option<&str>,
    need: &Need,
    head_only: bool,
) -> Option<Response<Body>> {
    let access = ctx.access.as_ref()?;
    let allowed = match need {
        Need::Nothing | Need::Public => true,
        Need::Base => user.is_some() || ctx.auth.is_none(),
        Need::Admin => access.is_admin(user) && !access.admin.actions.is_empty(),
        Need::Scrape => access.can_scrape(user),
        Need::Action(action, repo) => access.can(user, *action, repo.as_str()),
    };
    (!allowed).then(|| refusal(ctx, user, head_only, need))
}

/// The answer to a refused request: the 401 challenge for anonymous when htpasswd is on,
/// else 403 DENIED naming the repository (or "this endpoint").
fn refusal(ctx: &Ctx, user: Option<&str>, head_only: bool, need: &Need) -> Response<Body> {
    match (&ctx.auth, &ctx.bearer, user) {
        (Some(auth), _, None) => auth.unauthorized(head_only),
        (_, Some(bearer), None) => bearer.refuse_anonymous(need, head_only),
        _ => {
            let what = match need {
                Need::Action(_, repo) => repo.to_string(),
                _ => "this endpoint".to_owned(),
            };
            tracing::info!(user = user.unwrap_or(""), %what, "access denied");
            ApiError::Forbidden(format!("access to {what} is denied")).into_response(head_only)
        }
    }
}

async fn need(
    ctx: &Ctx,
    endpoint: &Endpoint,
    method: &Method,
    query: &Query,
) -> Result<Need, ApiError> {
    let action = match *method {
        Method::GET | Method::HEAD => Action::Read,
        Method::DELETE => Action::Delete,
        _ => Action::Create,
    };
    Ok(match endpoint {
        Endpoint::Base => Need::Base,
        Endpoint::Catalog | Endpoint::Discover => Need::Nothing,
        Endpoint::Manifest { name, reference } if *method == Method::PUT => {
            let mut tags = query.all("tag").chain(std::iter::once(reference.as_str()));
            let mut exists = false;
            for text in tags.by_ref() {
                if let Ok(tag) = text.parse::<Tag>() {
                    if ctx.engine.tag_exists(name, &tag).await? {
                        exists = true;
                        break;
                    }
                }
            }
            let action = if exists {
                Action::Update
            } else {
                Action::Create
            };
            Need::Action(action, name.clone())
        }
        Endpoint::TagsList { name }
        | Endpoint::Manifest { name, .. }
        | Endpoint::Blob { name, .. }
        | Endpoint::UploadStart { name }
        | Endpoint::Upload { name, .. }
        | Endpoint::Referrers { name, .. } => Need::Action(action, name.clone()),
    })
}

/// Brings `user`'s directory groups into memory (one index read when they are not there), so
/// that access control's synchronous checks for this request find them: called where a
/// request's user becomes known (after authentication; from the UI's session).
pub async fn load_groups(ctx: &Ctx, user: Option<&str>) {
    if let (Some(access), Some(user)) = (&ctx.access, user) {
        access.directory.load(user).await;
    }
}

/// Whether `user` may read `repo` (always, without access control).
pub fn can_read(ctx: &Ctx, user: Option<&str>, repo: &RepoName) -> bool {
    ctx.access
        .as_ref()
        .is_none_or(|access| access.can(user, Action::Read, repo.as_str()))
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
