//! The mgmt extension: `GET /v2/_zot/ext/mgmt`, the stripped config zot's UI reads to draw
//! its login page. Enabled with search, as zot's.
//!
//! Rules: only enabled authentication methods appear, in zot's shapes: `htpasswd: {}` (the
//! path blanked; also for LDAP, as zot, since zui draws its password form from it),
//! `ldap: {address}`, `bearer: {realm, service}`, `openid: {providers: {NAME: {name}}}`,
//! `apikey: true`; `http: {}` without authentication. The route needs no credentials even when htpasswd is on (as zot's: the login page reads it
//! before anyone logged in); credentials that are sent are checked as anywhere else.
use serde_json::{json, Map, Value};

use crate::config::Config;

/// The route, as zot's.
pub const PATH: &str = "/v2/_zot/ext/mgmt";

/// The document for `config`.
pub fn document(config: &Config) -> Value {
    let mut http = Map::new();
    let mut auth = Map::new();
    if let Some(basic) = &config.http.auth {
        // zot sets `htpasswd` for LDAP too: zui draws its password form from it.
        if basic.htpasswd_path.is_some() || basic.ldap.is_some() {
            auth.insert("htpasswd".into(), json!({}));
        }
        if let Some(ldap) = &basic.ldap {
            auth.insert("ldap".into(), json!({"address": ldap.address}));
        }
        if let Some(openid) = &basic.openid {
            let providers: Map<String, Value> = openid
                .providers
                .iter()
                .map(|provider| (provider.key.clone(), json!({"name": provider.name})))
                .collect();
            auth.insert("openid".into(), json!({"providers": providers}));
        }
    }
    if let Some(bearer) = &config.http.bearer {
        auth.insert(
            "bearer".into(),
            json!({"realm": bearer.realm, "service": bearer.service}),
        );
    }
    if config.http.apikey {
        auth.insert("apikey".into(), json!(true));
    }
    if !auth.is_empty() {
        http.insert("auth".into(), Value::Object(auth));
    }
    json!({
        "distSpecVersion": config.dist_spec_version,
        "commit": env!("BERTH_GIT_COMMIT"),
        "releaseTag": concat!("v", env!("CARGO_PKG_VERSION")),
        "binaryType": crate::ext::BINARY_TYPE,
        "http": http,
    })
}

/// The mgmt extension in the list (present while search is enabled): the document is built
/// once, from the config the daemon started with (authentication changes need a restart).
pub struct MgmtExt {
    document: Option<Value>,
}

impl MgmtExt {
    pub fn new(config: &Config) -> MgmtExt {
        MgmtExt {
            document: config.search.enabled.then(|| document(config)),
        }
    }
}

const ROUTES: &[crate::ext::Route] = &[crate::ext::Route {
    path: PATH,
    methods: &[
        hyper::Method::GET,
        hyper::Method::HEAD,
        hyper::Method::OPTIONS,
    ],
    need: crate::ext::Need::Public,
}];

impl crate::ext::Extension for MgmtExt {
    fn name(&self) -> &'static str {
        "mgmt"
    }

    fn routes(&self) -> &[crate::ext::Route] {
        ROUTES
    }

    fn handle<'a>(
        &'a self,
        _req: hyper::Request<crate::api::body::RequestBody>,
        _ctx: &'a crate::api::Ctx,
        _user: Option<&'a str>,
    ) -> crate::ext::Reply<'a> {
        Box::pin(async move {
            let document = self
                .document
                .clone()
                .ok_or(crate::api::error::ApiError::NotFound)?;
            // zot writes it without a Content-Type (Go then sniffs text/plain); JSON is what it is.
            Ok(crate::api::body::json_response(
                hyper::StatusCode::OK,
                "application/json",
                document,
            ))
        })
    }

    fn discover(&self, _ctx: &crate::api::Ctx) -> Vec<crate::ext::Listed> {
        match self.document.is_some() {
            true => vec![crate::ext::Listed {
                entry: crate::ext::Entry::Zot,
                endpoint: PATH,
                offers: "mgmt",
            }],
            false => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_methods_appear_only_when_on() {
        let (mut config, _) = crate::config::load(None).expect("default config");
        let open = document(&config);
        assert_eq!(open["http"], json!({}));
        assert_eq!(open["distSpecVersion"], json!("1.1.1"));
        config.http.auth = Some(crate::config::AuthConfig {
            htpasswd_path: Some("/secret/htpasswd".into()),
            ldap: None,
            openid: None,
            fail_delay: std::time::Duration::ZERO,
            secure_session: false,
        });
        let closed = document(&config);
        assert_eq!(closed["http"], json!({"auth": {"htpasswd": {}}}));
        config.http.apikey = true;
        assert_eq!(
            document(&config)["http"],
            json!({"auth": {"htpasswd": {}, "apikey": true}})
        );
        config.http.auth = None;
        config.http.apikey = false;
        config.http.bearer = Some(crate::config::BearerConfig {
            realm: "https://auth.example/token".into(),
            service: "registry".into(),
            cert: "/secret/token.pem".into(),
        });
        assert_eq!(
            document(&config)["http"],
            json!({"auth": {"bearer": {"realm": "https://auth.example/token", "service": "registry"}}})
        );
        assert!(
            !closed.to_string().contains("/secret")
                && !document(&config).to_string().contains("/secret"),
            "no path is ever shown"
        );
    }

    #[test]
    fn ldap_shows_the_password_form_and_its_address() {
        let text = serde_json::json!({
            "storage": {"rootDirectory": "/d"},
            "http": {"auth": {"ldap": {
                "address": "ldap.example.org", "baseDN": "dc=example,dc=org",
                "bindDN": "cn=reader", "bindPassword": "secret-bind",
            }}},
        });
        let (config, _) = crate::config::parse_str(&text.to_string()).expect("loads");
        let shown = document(&config);
        assert_eq!(
            shown["http"],
            json!({"auth": {"htpasswd": {}, "ldap": {"address": "ldap.example.org"}}})
        );
        assert!(!shown.to_string().contains("secret-bind"));
    }

    #[test]
    fn openid_lists_each_provider_by_name_and_turns_api_keys_on() {
        let text = serde_json::json!({
            "storage": {"rootDirectory": "/d"},
            "http": {"auth": {"openid": {"providers": {
                "oidc": {"name": "Corporate SSO", "issuer": "https://sso.example.com",
                         "clientid": "berth", "clientsecret": "secret-client"},
                "gitlab": {"issuer": "https://gitlab.example.com", "clientid": "g"},
            }}}},
        });
        let (config, _) = crate::config::parse_str(&text.to_string()).expect("loads");
        let shown = document(&config);
        assert_eq!(
            shown["http"],
            json!({"auth": {"openid": {"providers": {
                "gitlab": {"name": "gitlab"}, "oidc": {"name": "Corporate SSO"},
            }}, "apikey": true}})
        );
        assert!(!shown.to_string().contains("secret-client"));
    }
}
