//! Tests of `http.auth` (config/auth.rs): the htpasswd format table and the config keys.

use std::path::Path;
use std::time::Duration;

use super::auth::{Htpasswd, HtpasswdError, NO_AUTH_WARNING};
use super::{parse_str, AuthConfig, ConfigErrors, Warning};

fn bcrypt_of(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt hashes")
}

fn config_with_auth(
    auth: serde_json::Value,
) -> Result<(super::Config, Vec<Warning>), ConfigErrors> {
    let text = serde_json::json!({
        "storage": {"rootDirectory": "/d"},
        "http": {"realm": "registry", "auth": auth},
    });
    parse_str(&text.to_string())
}

fn write_htpasswd(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("htpasswd");
    std::fs::write(&path, text).expect("write htpasswd");
    path
}

#[test]
fn bcrypt_lines_of_every_accepted_prefix_parse() {
    let b = bcrypt_of("secret");
    let a = b.replacen("$2b$", "$2a$", 1);
    let y = b.replacen("$2b$", "$2y$", 1);
    let text = format!("# users\n\nalice:{a}\r\nbob:{b}\ncarol:{y}\n");
    let users = Htpasswd::parse(&text).expect("parses");
    assert_eq!(users.len(), 3);
    assert_eq!(users.hash_of("alice"), Some(a.as_str()));
    assert_eq!(users.hash_of("carol"), Some(y.as_str()));
    assert_eq!(users.hash_of("dave"), None);
    assert!(Htpasswd::parse("").expect("empty file").is_empty());
    // Debug never shows a hash.
    assert!(!format!("{users:?}").contains("$2"), "{users:?}");
}

#[test]
fn refused_lines_name_their_number_and_never_the_hash() {
    let good = bcrypt_of("secret");
    let table: &[(&str, &str)] = &[
        (
            "eve:$apr1$salt$0123456789abcdefghijkl",
            "not bcrypt (Apache MD5",
        ),
        ("eve:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "not bcrypt (SHA-1"),
        ("eve:$6$salt$hash", "not bcrypt (SHA-512-crypt"),
        ("eve:plaintext", "not bcrypt (crypt or plain text"),
        ("eve:", "not bcrypt (empty"),
        (
            "eve:$2x$04$abcdefghijklmnopqrstuu",
            "not bcrypt (buggy-bcrypt",
        ),
        ("no colon here", "expected `user:bcrypt-hash`"),
        (":$2b$04$abc", "empty user name"),
        ("eve:$2b$04$tooshort", "malformed bcrypt hash"),
    ];
    for (line, expected) in table {
        let text = format!("alice:{good}\n\n{line}\n");
        let (number, reason) = Htpasswd::parse(&text).expect_err(line);
        assert_eq!(number, 3, "{line}");
        assert!(reason.contains(expected), "{line}: {reason}");
        let hash = line.split_once(':').map_or("", |(_, hash)| hash);
        if hash.len() > 3 {
            assert!(!reason.contains(hash), "{reason}");
        }
    }
    let low_cost = good.replacen("$04$", "$03$", 1);
    let (_, reason) = Htpasswd::parse(&format!("eve:{low_cost}")).expect_err("cost 3");
    assert!(reason.contains("cost 3"), "{reason}");
    let (number, reason) =
        Htpasswd::parse(&format!("alice:{good}\nalice:{good}\n")).expect_err("twice");
    assert_eq!(number, 2);
    assert!(reason.contains("twice"), "{reason}");
}

#[test]
fn htpasswd_config_is_typed_with_its_fail_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_htpasswd(dir.path(), &format!("alice:{}\n", bcrypt_of("x")));
    let (config, warnings) = config_with_auth(serde_json::json!({
        "htpasswd": {"path": path}, "failDelay": 2,
    }))
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(
        config.http.auth,
        Some(AuthConfig {
            htpasswd_path: Some(path.clone()),
            ldap: None,
            openid: None,
            fail_delay: Duration::from_secs(2),
            secure_session: false,
        })
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let (config, _) = config_with_auth(serde_json::json!({"htpasswd": {"path": path}}))
        .unwrap_or_else(|errors| panic!("{errors}"));
    let auth = config.http.auth.expect("auth");
    assert_eq!(auth.fail_delay, Duration::ZERO);
    assert!(
        !auth.secure_session,
        "Secure cookies are asked for, not assumed"
    );
    let (config, warnings) = config_with_auth(serde_json::json!({
        "htpasswd": {"path": path}, "secureSession": true,
    }))
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(config.http.auth.expect("auth").secure_session);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn other_methods_warn_and_without_htpasswd_nothing_authenticates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_htpasswd(dir.path(), &format!("alice:{}\n", bcrypt_of("x")));
    let (config, warnings) = config_with_auth(serde_json::json!({
        "htpasswd": {"path": path}, "openid": {"providers": {}}, "apikey": true,
        "sessionKeysFile": "/k",
    }))
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(config.http.auth.is_some());
    assert!(config.http.apikey, "API keys are on beside htpasswd");
    let mut paths: Vec<&str> = warnings.iter().map(|w| w.key_path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["http.auth.openid.providers", "http.auth.sessionKeysFile"]
    );
    let (config, warnings) = config_with_auth(serde_json::json!({"openid": {}, "failDelay": 1}))
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(config.http.auth, None);
    let auth = warnings
        .iter()
        .find(|w| w.key_path == "http.auth")
        .expect("the no-authentication warning");
    assert_eq!(auth.message, NO_AUTH_WARNING);
    assert!(auth.message.contains("WITHOUT CREDENTIALS"));
}

#[test]
fn a_missing_or_refused_htpasswd_file_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("absent");
    let errors = config_with_auth(serde_json::json!({"htpasswd": {"path": missing}}))
        .expect_err("missing file");
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(errors.0[0].key_path, "http.auth.htpasswd.path");
    assert!(
        errors.0[0].message.contains(&missing.display().to_string()),
        "{errors}"
    );
    let path = write_htpasswd(
        dir.path(),
        &format!("alice:{}\nbob:$apr1$x$y\n", bcrypt_of("x")),
    );
    let errors =
        config_with_auth(serde_json::json!({"htpasswd": {"path": path}})).expect_err("bad line");
    let message = errors.to_string();
    assert!(
        message.contains(&format!("{} line 2", path.display())),
        "{message}"
    );
    assert!(message.contains("not bcrypt"), "{message}");
    match Htpasswd::load(&path) {
        Err(HtpasswdError::Line { line: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Htpasswd::load(dir.path()),
        Err(HtpasswdError::Unreadable { .. })
    ));
}

#[test]
fn malformed_auth_sections_are_errors() {
    let table = [
        (
            serde_json::json!({"htpasswd": {}}),
            "http.auth.htpasswd.path",
        ),
        (
            serde_json::json!({"htpasswd": {"path": ""}}),
            "http.auth.htpasswd.path",
        ),
        (
            serde_json::json!({"htpasswd": {"path": 3}}),
            "http.auth.htpasswd.path",
        ),
        (
            serde_json::json!({"htpasswd": {"file": "/x"}}),
            "http.auth.htpasswd.file",
        ),
        (
            serde_json::json!({"failDelay": "2s"}),
            "http.auth.failDelay",
        ),
        (serde_json::json!({"failDelay": 601}), "http.auth.failDelay"),
        (
            serde_json::json!({"secureSession": "yes"}),
            "http.auth.secureSession",
        ),
        (serde_json::json!({"kerberos": {}}), "http.auth.kerberos"),
        (serde_json::json!("htpasswd"), "http.auth"),
    ];
    for (auth, key_path) in table {
        let errors = config_with_auth(auth.clone()).expect_err(&auth.to_string());
        assert!(
            errors.0.iter().any(|error| error.key_path == key_path),
            "{auth}: {errors}"
        );
    }
}

#[test]
fn bearer_takes_over_and_api_keys_need_htpasswd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = write_htpasswd(dir.path(), &format!("alice:{}\n", bcrypt_of("x")));
    let cert = dir.path().join("token.pem");
    let key = rcgen::KeyPair::generate().expect("key");
    std::fs::write(&cert, key.public_key_pem()).expect("write");
    let bearer = serde_json::json!({"realm": "https://auth.example/token", "service": "registry", "cert": cert});
    let (config, warnings) = config_with_auth(serde_json::json!({
        "htpasswd": {"path": htpasswd}, "apikey": true, "bearer": bearer.clone(),
    }))
    .unwrap_or_else(|errors| panic!("{errors}"));
    let on = config.http.bearer.expect("bearer on");
    assert_eq!(
        (on.realm.as_str(), on.service.as_str(), on.cert.as_path()),
        ("https://auth.example/token", "registry", cert.as_path())
    );
    assert_eq!(config.http.auth, None, "bearer alone, as zot");
    assert!(!config.http.apikey);
    let mut paths: Vec<&str> = warnings.iter().map(|w| w.key_path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["http.auth.apikey", "http.auth.htpasswd"]);

    let (config, warnings) = config_with_auth(serde_json::json!({"apikey": true}))
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(!config.http.apikey, "no key without a user to own it");
    assert!(warnings.iter().any(|w| w.key_path == "http.auth.apikey"));

    for (section, key_path) in [
        (
            serde_json::json!({"service": "s", "cert": cert}),
            "http.auth.bearer.realm",
        ),
        (
            serde_json::json!({"realm": "https://a/t", "cert": cert}),
            "http.auth.bearer.service",
        ),
        (
            serde_json::json!({"realm": "https://a/t", "service": "s"}),
            "http.auth.bearer.cert",
        ),
        (
            serde_json::json!({"realm": "auth.example", "service": "s", "cert": cert}),
            "http.auth.bearer.realm",
        ),
        (
            serde_json::json!({"realm": "https://a/\"t", "service": "s", "cert": cert}),
            "http.auth.bearer.realm",
        ),
        (
            serde_json::json!({"realm": "https://a/t", "service": "s\"", "cert": cert}),
            "http.auth.bearer.service",
        ),
        (
            serde_json::json!({"realm": "https://a/t", "service": "s", "cert": dir.path().join("absent")}),
            "http.auth.bearer.cert",
        ),
        (
            serde_json::json!({"realm": "https://a/t", "service": "", "cert": cert}),
            "http.auth.bearer.service",
        ),
    ] {
        let errors = config_with_auth(serde_json::json!({"bearer": section}))
            .expect_err(&section.to_string());
        assert!(
            errors.0.iter().any(|error| error.key_path == key_path),
            "{section}: {errors}"
        );
    }
    let errors = config_with_auth(serde_json::json!({"apikey": "yes"})).expect_err("not a bool");
    assert!(errors.to_string().contains("http.auth.apikey"), "{errors}");
}

#[test]
fn mtls_identity_attributes_are_zots_names_in_any_case() {
    use super::IdentityAttribute::*;
    let (config, _) = config_with_auth(serde_json::json!({"mtls": {
        "identityAttributes": ["uri", "CN", "DN", "rfc822Name", "DNSName"],
        "uriSanPattern": "spiffe://example.org/workload/(.*)",
        "uriSanIndex": 1, "dnsSanIndex": 2, "emailSanIndex": 3,
    }}))
    .unwrap_or_else(|errors| panic!("{errors}"));
    let mtls = config.http.mtls;
    assert_eq!(
        mtls.identity_attributes,
        [Uri, CommonName, Subject, Email, DnsName]
    );
    assert_eq!(
        mtls.uri_san_pattern.as_deref(),
        Some("spiffe://example.org/workload/(.*)")
    );
    assert_eq!(
        (mtls.uri_san_index, mtls.dns_san_index, mtls.email_san_index),
        (1, 2, 3)
    );
    let (config, warnings) = config_with_auth(serde_json::json!({"mtls": {}}))
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(
        config.http.mtls.identity_attributes,
        [CommonName],
        "zot's default"
    );
    assert!(
        warnings.iter().any(|w| w.key_path == "http.auth.mtls"),
        "without http.tls.cacert nothing asks for certificates: {warnings:?}"
    );
    for (section, key_path) in [
        (
            serde_json::json!({"identityAttributes": ["Serial"]}),
            "identityAttributes",
        ),
        (
            serde_json::json!({"identityAttributes": []}),
            "identityAttributes",
        ),
        (serde_json::json!({"uriSanPattern": "("}), "uriSanPattern"),
        (serde_json::json!({"uriSanIndex": -1}), "uriSanIndex"),
        (serde_json::json!({"dnsSanIndex": "0"}), "dnsSanIndex"),
        (serde_json::json!({"subjectIndex": 0}), "subjectIndex"),
    ] {
        let errors =
            config_with_auth(serde_json::json!({"mtls": section})).expect_err(&section.to_string());
        let path = format!("http.auth.mtls.{key_path}");
        assert!(
            errors.0.iter().any(|error| error.key_path == path),
            "{section}: {errors}"
        );
    }
}

#[test]
fn ldap_keys_are_zots_and_the_bind_password_stays_secret() {
    use super::LdapTransport;
    let dir = tempfile::tempdir().expect("tempdir");
    let credentials = dir.path().join("ldap-credentials.json");
    std::fs::write(
        &credentials,
        r#"{"bindDN": "cn=reader,dc=example,dc=org", "bindPassword": "s3cret-bind"}"#,
    )
    .expect("write");
    let (config, warnings) = config_with_auth(serde_json::json!({"ldap": {
        "address": "ldap.example.org", "startTLS": true, "baseDN": "ou=people,dc=example,dc=org",
        "userAttribute": "uid", "userGroupAttribute": "memberOf", "subtreeSearch": true,
        "userFilter": "(objectClass=person)", "credentialsFile": credentials,
    }}))
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let auth = config.http.auth.expect("Basic authentication on");
    assert_eq!(auth.htpasswd_path, None);
    let ldap = auth.ldap.expect("ldap");
    assert_eq!(
        (ldap.port, ldap.transport, ldap.subtree_search),
        (389, LdapTransport::StartTls, true)
    );
    let (bind_dn, bind_password) = ldap.service_account().expect("the file is read");
    assert_eq!(bind_dn.as_deref(), Some("cn=reader,dc=example,dc=org"));
    assert_eq!(bind_password.as_deref(), Some("s3cret-bind"));
    assert!(!format!("{ldap:?}").contains("s3cret"), "Debug hides it");

    let (config, _) = config_with_auth(serde_json::json!({"ldap": {
        "address": "ldap.example.org", "baseDN": "dc=example,dc=org",
    }}))
    .unwrap_or_else(|errors| panic!("{errors}"));
    let ldap = config.http.auth.expect("on").ldap.expect("ldap");
    assert_eq!((ldap.port, ldap.transport), (636, LdapTransport::Ldaps));
    assert_eq!(ldap.user_attribute, "uid");

    let (_, warnings) = config_with_auth(serde_json::json!({"ldap": {
        "address": "a", "baseDN": "dc=x", "insecure": true, "skipVerify": true,
    }}))
    .unwrap_or_else(|errors| panic!("{errors}"));
    let mut paths: Vec<&str> = warnings.iter().map(|w| w.key_path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["http.auth.ldap.insecure", "http.auth.ldap.skipVerify"]
    );

    let bad_credentials = dir.path().join("bad.json");
    std::fs::write(&bad_credentials, "bindPassword: s3cret-bind").expect("write");
    for (section, key_path) in [
        (serde_json::json!({"baseDN": "dc=x"}), "address"),
        (serde_json::json!({"address": "a"}), "baseDN"),
        (
            serde_json::json!({"address": "a", "baseDN": "dc=x", "port": 0}),
            "port",
        ),
        (
            serde_json::json!({"address": "a", "baseDN": "dc=x", "userFilter": "objectClass=person"}),
            "userFilter",
        ),
        (
            serde_json::json!({"address": "a", "baseDN": "dc=x", "userAttribute": "uid)(x"}),
            "userAttribute",
        ),
        (
            serde_json::json!({"address": "a", "baseDN": "dc=x", "startTLS": "yes"}),
            "startTLS",
        ),
        (
            serde_json::json!({"address": "a", "baseDN": "dc=x", "bindPasswrd": "x"}),
            "bindPasswrd",
        ),
    ] {
        let errors =
            config_with_auth(serde_json::json!({"ldap": section})).expect_err(&section.to_string());
        let path = format!("http.auth.ldap.{key_path}");
        assert!(
            errors.0.iter().any(|error| error.key_path == path),
            "{section}: {errors}"
        );
    }
    // The file is read when the daemon starts: a broken one is refused without its contents.
    let (config, _) = config_with_auth(serde_json::json!({"ldap": {
        "address": "a", "baseDN": "dc=x", "credentialsFile": bad_credentials,
    }}))
    .unwrap_or_else(|errors| panic!("{errors}"));
    let error = config
        .http
        .auth
        .expect("on")
        .ldap
        .expect("ldap")
        .service_account()
        .expect_err("bad file");
    assert!(
        error.contains("bad.json") && !error.contains("s3cret"),
        "{error}"
    );
}

#[test]
fn openid_providers_are_read_with_zots_keys_and_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, warnings) = config_with_auth(serde_json::json!({"openid": {
        "providers": {
            "oidc": {"name": "Corporate SSO", "issuer": "https://sso.example.com/realms/x/",
                     "clientid": "berth", "clientsecret": "s", "scopes": ["groups"],
                     "claimMapping": {"username": "preferred_username"}, "keypath": "/k"},
            "github": {"clientid": "gh", "clientsecret": "s2"},
        },
        "callbackAllowOrigins": ["https://ui.example.com/"],
    }}))
    .unwrap_or_else(|errors| panic!("{errors}"));
    let openid = config.http.auth.expect("auth").openid.expect("openid");
    assert!(config.http.apikey, "OpenID turns API keys on, as zot");
    assert_eq!(openid.callback_allow_origins, ["https://ui.example.com"]);
    let [github, oidc] = &openid.providers[..] else {
        panic!("{:?}", openid.providers)
    };
    assert_eq!(oidc.name, "Corporate SSO");
    assert_eq!(
        oidc.kind,
        crate::config::ProviderKind::OpenIdConnect {
            issuer: "https://sso.example.com/realms/x/".into()
        }
    );
    assert_eq!(oidc.scopes, ["openid", "groups"], "openid comes first");
    assert_eq!(
        (oidc.username_claim.as_str(), oidc.groups_claim.as_str()),
        ("preferred_username", "groups")
    );
    assert_eq!(github.name, "github");
    assert!(matches!(
        &github.kind,
        crate::config::ProviderKind::GitHub { api_url, .. } if api_url == "https://api.github.com"
    ));
    assert_eq!(github.scopes, ["read:org", "user:email"]);
    assert_eq!(github.username_claim, "email");
    let paths: Vec<&str> = warnings.iter().map(|w| w.key_path.as_str()).collect();
    assert_eq!(paths, ["http.auth.openid.providers.oidc.keypath"]);
    assert!(!format!("{oidc:?}").contains("\"s\""), "no secret in Debug");
    drop(dir);

    for (bad, at) in [
        (
            serde_json::json!({"oidc": {"clientid": "c"}}),
            "http.auth.openid.providers.oidc.issuer",
        ),
        (
            serde_json::json!({"oidc": {"issuer": "https://i"}}),
            "http.auth.openid.providers.oidc.clientid",
        ),
        (
            serde_json::json!({"oidc": {"issuer": "sso.example.com", "clientid": "c"}}),
            "http.auth.openid.providers.oidc.issuer",
        ),
        (
            serde_json::json!({"a/b": {"issuer": "https://i", "clientid": "c"}}),
            "http.auth.openid.providers[\"a/b\"]",
        ),
        (
            serde_json::json!({"oidc": {"issuer": "https://i", "clientid": "c", "claimMapping": {"username": ""}}}),
            "http.auth.openid.providers.oidc.claimMapping.username",
        ),
    ] {
        let errors = config_with_auth(serde_json::json!({"openid": {"providers": bad}}))
            .expect_err("refused");
        assert!(
            errors.0.iter().any(|error| error.key_path == at),
            "{at}: {errors}"
        );
    }
}
