//! `http.auth.openid`, typed: zot's single sign-on providers for the web UI.
//!
//! Rules:
//! - `providers` maps a name (the one in `/zot/auth/login?provider=NAME` and the callback
//!   path) to a provider. zot knows `google`, `gitlab` and `oidc` (OpenID Connect with
//!   discovery from `issuer`) and `github` (OAuth2); berth treats every name but `github` as
//!   OpenID Connect (decided: a `keycloak` or `dex` entry works as its user expects), and
//!   `github` as GitHub's OAuth2 (`authurl`, `tokenurl` and berth's `apiurl` override
//!   GitHub's endpoints, for GitHub Enterprise).
//! - Each provider: `clientid` (required) and `clientsecret` inline, or the JSON file
//!   `credentialsFile` (`{"clientid": ..., "clientsecret": ...}`, read when the daemon starts,
//!   as LDAP's), which wins. No secret means a public client (PKCE alone). `issuer` is
//!   required for OpenID Connect, an absolute http(s) URL. `scopes` (default `openid`,
//!   `profile`, `email`; `openid` is added first when missing), `name` (the login button's
//!   label; default the provider's key), `claimMapping.username` (default `email`, as zot)
//!   and `claimMapping.groups` (default `groups`). `keypath` (private-key JWT client
//!   authentication) is not supported: warned, ignored.
//! - `callbackAllowOrigins`: origins (`scheme://host[:port]`) a login may return to through
//!   `callback_ui` besides this registry's own pages.
//! - The secret never appears in an error, a log line or `Debug` output.

use std::fmt;
use std::path::PathBuf;

use super::walk::{Ctx, Section};

/// What a provider speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect: discovery from the issuer, an ID token.
    OpenIdConnect { issuer: String },
    /// GitHub's OAuth2: the primary e-mail is the user, the organisations are the groups.
    GitHub {
        auth_url: String,
        token_url: String,
        api_url: String,
    },
}

/// One `http.auth.openid.providers` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenIdProvider {
    /// The key under `providers`.
    pub key: String,
    /// The login button's label (`name`, default the key).
    pub name: String,
    pub kind: ProviderKind,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `credentialsFile`: the client's JSON file, which wins over the inline pair.
    pub credentials_file: Option<PathBuf>,
    pub scopes: Vec<String>,
    /// `claimMapping.username`: the claim that names the user.
    pub username_claim: String,
    /// `claimMapping.groups`: the claim that lists the user's groups.
    pub groups_claim: String,
}

impl fmt::Debug for OpenIdProvider {
    /// Leaves the client secret out.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OpenIdProvider")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field("credentials_file", &self.credentials_file)
            .field("scopes", &self.scopes)
            .field("username_claim", &self.username_claim)
            .field("groups_claim", &self.groups_claim)
            .finish_non_exhaustive()
    }
}

/// `http.auth.openid`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenIdConfig {
    /// By key, sorted.
    pub providers: Vec<OpenIdProvider>,
    /// `callbackAllowOrigins`, without a trailing slash.
    pub callback_allow_origins: Vec<String>,
}

const GITHUB_AUTH_URL: &str = "https://github.com/login/oauth/authorize";
const GITHUB_TOKEN_URL: &str = "https://github.com/login/oauth/access_token";
const GITHUB_API_URL: &str = "https://api.github.com";

/// Whether `url` is an absolute http(s) URL with a host.
pub(crate) fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !url.contains(char::is_whitespace)
    })
}

/// `http.auth.openid` within `http.auth`: `Some(None)` when absent, `None` when invalid.
pub(crate) fn openid(ctx: &mut Ctx, auth: &Section<'_>) -> Option<Option<OpenIdConfig>> {
    let Some(value) = auth.raw("openid") else {
        return Some(None);
    };
    let section = Section::read(
        ctx,
        &auth.path_of("openid"),
        value,
        &["providers", "callbackAllowOrigins"],
        &[],
    )?;
    let mut ok = true;
    let origins = match section.strings(ctx, "callbackAllowOrigins") {
        Some(origins) => origins,
        None => {
            ok &= !section.has("callbackAllowOrigins");
            Vec::new()
        }
    };
    let mut callback_allow_origins = Vec::new();
    for (index, origin) in origins.into_iter().enumerate() {
        let origin = origin.trim_end_matches('/').to_owned();
        let bare = is_http_url(&origin) && origin.split('/').count() == 3;
        if !bare {
            let path = format!("{}[{index}]", section.path_of("callbackAllowOrigins"));
            ctx.error(
                &path,
                "expected an origin such as \"https://ui.example.com\"",
            );
            ok = false;
        }
        callback_allow_origins.push(origin);
    }
    let mut providers = Vec::new();
    match section.raw("providers") {
        Some(serde_json::Value::Object(entries)) => {
            for (key, value) in entries {
                let path = super::walk::join(&section.path_of("providers"), key);
                match provider(ctx, &path, key, value) {
                    Some(provider) => providers.push(provider),
                    None => ok = false,
                }
            }
        }
        Some(other) => {
            ctx.error(
                &section.path_of("providers"),
                format!(
                    "expected an object of providers by name, got {}",
                    super::walk::describe(other)
                ),
            );
            ok = false;
        }
        None => {}
    }
    if providers.is_empty() && ok {
        ctx.warn(
            &section.path_of("providers"),
            "ignored: no providers, so nobody can log in through OpenID",
        );
        return Some(None);
    }
    providers.sort_by(|left, right| left.key.cmp(&right.key));
    ok.then_some(Some(OpenIdConfig {
        providers,
        callback_allow_origins,
    }))
}

fn provider(
    ctx: &mut Ctx,
    path: &str,
    key: &str,
    value: &serde_json::Value,
) -> Option<OpenIdProvider> {
    let section = Section::read(
        ctx,
        path,
        value,
        &[
            "name",
            "issuer",
            "clientid",
            "clientsecret",
            "credentialsFile",
            "scopes",
            "authurl",
            "tokenurl",
            "apiurl",
            "claimMapping",
        ],
        &[(
            "keypath",
            "ignored: private-key JWT client authentication is not supported; use \
             clientsecret or a public client",
        )],
    )?;
    let valid_key = !key.is_empty()
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    if !valid_key {
        ctx.error(
            path,
            "a provider's name is letters, digits, '-', '_' and '.' (it is part of the \
             callback URL)",
        );
        return None;
    }
    let mut ok = true;
    let mut text = |ctx: &mut Ctx, name: &str| -> Option<String> {
        match section.string(ctx, name) {
            Some(value) if value.trim().is_empty() => {
                ctx.error(&section.path_of(name), "must not be empty");
                ok = false;
                None
            }
            Some(value) => Some(value),
            None => {
                ok &= !section.has(name);
                None
            }
        }
    };
    let name = text(ctx, "name");
    let issuer = text(ctx, "issuer");
    let client_id = text(ctx, "clientid");
    let client_secret = text(ctx, "clientsecret");
    let credentials_file = text(ctx, "credentialsFile").map(PathBuf::from);
    let auth_url = text(ctx, "authurl");
    let token_url = text(ctx, "tokenurl");
    let api_url = text(ctx, "apiurl");
    let scopes = match section.strings(ctx, "scopes") {
        Some(scopes) => scopes,
        None => {
            ok &= !section.has("scopes");
            Vec::new()
        }
    };
    let (username_claim, groups_claim) = claim_mapping(ctx, &section, &mut ok);
    for (key, url) in [
        ("issuer", &issuer),
        ("authurl", &auth_url),
        ("tokenurl", &token_url),
        ("apiurl", &api_url),
    ] {
        if let Some(url) = url.as_deref().filter(|url| !is_http_url(url)) {
            let message = format!("expected an absolute http:// or https:// URL, got {url:?}");
            ctx.error(&section.path_of(key), message);
            ok = false;
        }
    }
    if client_id.is_none() && credentials_file.is_none() && ok {
        ctx.error(
            &section.path_of("clientid"),
            "required: the client ID registered with the provider (or credentialsFile)",
        );
        ok = false;
    }
    let github = key == "github";
    let kind = match (github, issuer) {
        (true, _) => {
            let trimmed = |url: Option<String>, default: &str| {
                url.unwrap_or_else(|| default.to_owned())
                    .trim_end_matches('/')
                    .to_owned()
            };
            ProviderKind::GitHub {
                auth_url: trimmed(auth_url, GITHUB_AUTH_URL),
                token_url: trimmed(token_url, GITHUB_TOKEN_URL),
                api_url: trimmed(api_url, GITHUB_API_URL),
            }
        }
        (false, Some(issuer)) => {
            for key in ["authurl", "tokenurl", "apiurl"] {
                if section.has(key) {
                    ctx.warn(
                        &section.path_of(key),
                        "ignored: an OpenID Connect provider's endpoints come from its \
                         issuer's discovery document",
                    );
                }
            }
            // As written: discovery compares it with the document's, whose `iss` every ID
            // token must then carry exactly.
            ProviderKind::OpenIdConnect { issuer }
        }
        (false, None) => {
            if ok {
                ctx.error(
                    &section.path_of("issuer"),
                    "required: the provider's issuer URL (discovery is read from \
                     ISSUER/.well-known/openid-configuration)",
                );
            }
            return None;
        }
    };
    let mut scopes = scopes;
    if scopes.is_empty() {
        scopes = match github {
            true => vec!["read:org".into(), "user:email".into()],
            false => vec!["openid".into(), "profile".into(), "email".into()],
        };
    }
    if !github && !scopes.iter().any(|scope| scope == "openid") {
        scopes.insert(0, "openid".into());
    }
    ok.then(|| OpenIdProvider {
        key: key.to_owned(),
        name: name.unwrap_or_else(|| key.to_owned()),
        kind,
        client_id,
        client_secret,
        credentials_file,
        scopes,
        username_claim,
        groups_claim,
    })
}

/// `claimMapping{username, groups}` with zot's defaults.
fn claim_mapping(ctx: &mut Ctx, provider: &Section<'_>, ok: &mut bool) -> (String, String) {
    let defaults = ("email".to_owned(), "groups".to_owned());
    let Some(value) = provider.raw("claimMapping") else {
        return defaults;
    };
    let path = provider.path_of("claimMapping");
    let Some(section) = Section::read(ctx, &path, value, &["username", "groups"], &[]) else {
        *ok = false;
        return defaults;
    };
    let mut claim = |ctx: &mut Ctx, key: &str, default: String| match section.string(ctx, key) {
        Some(claim) if !claim.trim().is_empty() => claim,
        Some(_) => {
            ctx.error(&section.path_of(key), "must not be empty");
            *ok = false;
            default
        }
        None => {
            *ok &= !section.has(key);
            default
        }
    };
    (
        claim(ctx, "username", defaults.0),
        claim(ctx, "groups", defaults.1),
    )
}
