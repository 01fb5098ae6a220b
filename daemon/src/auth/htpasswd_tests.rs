//! Tests of auth/htpasswd.rs: header parsing, the check and its cache, the reload, the 401.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper::header::{self, HeaderMap, HeaderValue};

use super::{basic_payload, decode_basic, Authenticator, Refusal, RELOAD_CHECK_INTERVAL};
use crate::config::AuthConfig;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn basic(user: &str, password: &str) -> HeaderMap {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Basic {encoded}")).expect("header");
    headers.insert(header::AUTHORIZATION, value);
    headers
}

fn write_users(path: &Path, users: &[(&str, &str)]) {
    let text: String = users
        .iter()
        .map(|(user, password)| format!("{user}:{}\n", bcrypt::hash(password, 4).expect("hash")))
        .collect();
    // Through a rename, as editors and `htpasswd` do: a reader never sees half a file.
    let staging = path.with_extension("new");
    std::fs::write(&staging, text).expect("write htpasswd");
    std::fs::rename(&staging, path).expect("rename htpasswd");
}

fn authenticator(dir: &Path, users: &[(&str, &str)]) -> Authenticator {
    let path = dir.join("htpasswd");
    write_users(&path, users);
    let config = AuthConfig {
        htpasswd_path: Some(path),
        ldap: None,
        openid: None,
        fail_delay: Duration::ZERO,
        secure_session: false,
    };
    Authenticator::new(&config, Some("my \"realm\"")).expect("authenticator")
}

#[test]
fn basic_headers_parse_and_malformed_ones_do_not() {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    assert_eq!(basic_payload(b"Basic YTpi"), Some(&b"YTpi"[..]));
    assert_eq!(basic_payload(b"bAsIc   YTpi  "), Some(&b"YTpi"[..]));
    for value in [
        &b"Bearer abc"[..],
        b"Basic",
        b"Basicx YTpi",
        b"",
        b"Digest x",
    ] {
        assert_eq!(basic_payload(value), None, "{value:?}");
    }
    assert_eq!(basic_payload(&vec![b'a'; 5000]), None);
    assert_eq!(
        decode_basic(b64("alice:s:e:c").as_bytes()),
        Some(("alice".to_owned(), b"s:e:c".to_vec()))
    );
    assert_eq!(
        decode_basic(b64("alice:").as_bytes()),
        Some(("alice".to_owned(), Vec::new()))
    );
    for bad in [b64("no colon"), b64(":password"), "!!!".to_owned()] {
        assert_eq!(decode_basic(bad.as_bytes()), None, "{bad}");
    }
}

#[test]
fn good_credentials_pass_and_are_cached_bad_ones_never() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = authenticator(dir.path(), &[("alice", "secret"), ("bob", "hunter2")]);
    runtime().block_on(async {
        assert_eq!(
            auth.check(&HeaderMap::new(), None).await,
            Err(Refusal::Missing)
        );
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert_eq!(auth.check(&bearer, None).await, Err(Refusal::Missing));
        let wrong = basic("alice", "guess");
        assert_eq!(auth.check(&wrong, None).await, Err(Refusal::Failed));
        assert_eq!(auth.check(&wrong, None).await, Err(Refusal::Failed));
        let unknown = basic("mallory", "secret");
        assert_eq!(auth.check(&unknown, None).await, Err(Refusal::Failed));
        let version = auth.current.load_full();
        assert!(
            version.verified.lock().unwrap().is_empty(),
            "no failure cached"
        );
        let good = basic("alice", "secret");
        assert_eq!(auth.check(&good, None).await, Ok("alice".to_owned()));
        let key = ("alice".to_owned(), auth.password_key(b"secret"));
        assert!(version.is_verified(&key));
        assert_eq!(version.verified.lock().unwrap().len(), 1);
        // The cache holds a salted hash, not the password.
        assert_ne!(&key.1[..6], b"secret");
        assert_eq!(auth.check(&good, None).await, Ok("alice".to_owned()));
        assert_eq!(
            auth.check(&basic("bob", "hunter2"), None).await,
            Ok("bob".to_owned())
        );
        // A cached login does not admit another password of the same user.
        assert_eq!(auth.check(&wrong, None).await, Err(Refusal::Failed));
    });
}

#[test]
fn a_changed_file_is_reloaded_and_a_removed_user_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = authenticator(dir.path(), &[("alice", "secret"), ("bob", "hunter2")]);
    let path = dir.path().join("htpasswd");
    runtime().block_on(async {
        let bob = basic("bob", "hunter2");
        assert_eq!(auth.check(&bob, None).await, Ok("bob".to_owned()));
        write_users(&path, &[("alice", "secret")]);
        tokio::time::sleep(RELOAD_CHECK_INTERVAL + Duration::from_millis(100)).await;
        assert_eq!(auth.check(&bob, None).await, Err(Refusal::Failed));
        let alice = basic("alice", "secret");
        assert_eq!(auth.check(&alice, None).await, Ok("alice".to_owned()));
        // An invalid file keeps the last good users.
        std::fs::write(&path, "alice:$apr1$x$y\n").expect("write");
        tokio::time::sleep(RELOAD_CHECK_INTERVAL + Duration::from_millis(100)).await;
        assert_eq!(auth.check(&alice, None).await, Ok("alice".to_owned()));
        assert_eq!(auth.check(&bob, None).await, Err(Refusal::Failed));
        // And a fixed file is picked up again.
        write_users(&path, &[("bob", "hunter2")]);
        tokio::time::sleep(RELOAD_CHECK_INTERVAL + Duration::from_millis(100)).await;
        assert_eq!(auth.check(&bob, None).await, Ok("bob".to_owned()));
        assert_eq!(auth.check(&alice, None).await, Err(Refusal::Failed));
    });
}

#[test]
fn refusals_are_401_with_the_realm_and_an_oci_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut auth = authenticator(dir.path(), &[("alice", "secret")]);
    auth.fail_delay = Duration::from_millis(300);
    runtime().block_on(async {
        let started = std::time::Instant::now();
        let refused = auth
            .admit(&HeaderMap::new(), None, false)
            .await
            .expect_err("no credentials");
        assert!(started.elapsed() < Duration::from_millis(300), "no delay");
        assert_eq!(refused.status(), 401);
        assert_eq!(
            refused.headers()[header::WWW_AUTHENTICATE],
            r#"Basic realm="my \"realm\"""#
        );
        let body = refused
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["errors"][0]["code"], "UNAUTHORIZED");
        assert_eq!(json["errors"][0]["message"], "authentication required");
        let started = std::time::Instant::now();
        let refused = auth
            .admit(&basic("alice", "nope"), None, true)
            .await
            .expect_err("wrong password");
        assert!(started.elapsed() >= Duration::from_millis(300), "failDelay");
        assert_eq!(refused.status(), 401);
        let body = refused
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(body.is_empty(), "HEAD gets no body");
        let admitted = auth.admit(&basic("alice", "secret"), None, false).await;
        assert_eq!(
            admitted.ok().map(|identity| identity.user),
            Some("alice".to_owned())
        );
    });
}
