//! Unit tests of auth/bearer.rs: key loading (each kind, bundles, refused files), the key IDs
//! against values computed independently (Python `cryptography` and `jwcrypto`), token
//! verification with keys minted in memory, the scopes of each request and the challenges.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use hyper::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{CertificateParams, KeyPair};
use serde_json::{json, Value};

use super::*;

/// An RSA-2048 public key made with openssl; its IDs were computed with Python.
const RSA2048_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1FLfLCxWy1IlLtdASKyU
T6R0/wAWVwCY5PCItwmZ54lsBQj+kCvSgJ0FXRhwXw2NQ2vQ75D8y+sfViK6i+Ls
ptjUA5oHvBFf4WWylFHz2WjELm/8UUDKwt0yIuQTVCfnARviQqN3FVKKky4mIGC+
p2bVyTUVNcJLdwXuIwwlWaEJa0X4YnVAWkOjMquPE8BBsclDMokRewxOQw+zLntY
F/8UkTmvJflQnEn8uKb3Cq80b6hE0rZL/Y2HSJQYq7TuXh+S+aIHw3z4nw9gntrC
j4QuV41jtCbbaNnB8i3WUkdzYc3Jicwg2mC0KvuzySFgy+9lox0o8S9vwrROLWZE
qwIDAQAB
-----END PUBLIC KEY-----
";
/// base32(SHA-256(SPKI)[:30]) in groups of 4 (Python `cryptography` + `base64.b32encode`).
const RSA2048_LIBTRUST_ID: &str = "IXCR:ISIN:UFQR:NRWY:RZ5P:OHKX:7N5V:VEXC:SC4E:5ZQ3:KLBN:JZS5";
/// `jwcrypto.jwk.JWK.from_pem(...).thumbprint()`.
const RSA2048_THUMBPRINT: &str = "16MP6gVz0MpCfLfePndYfqcu6b1eKQgFDNnGSvpx_xE";

const RSA1024_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDM5+enwXrXLcZcpcACbs7GY4dc
PHpc3DrcQrni3vVeftHHGpRXLMqKk5QAm1BcZfstyoWZdh+ewm5XNECdrjQhq6DM
gagCLIfD/fGPCd19em6x7mX4kkpjB9Ruflp5kcBF4gIhIchpH07vrcDhLQmSVZqu
I14tsz1mQivu2JyJjQIDAQAB
-----END PUBLIC KEY-----
";

const SECP256K1_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAEEH4xtz8dO2VGL5FfXnn2u9ZdNBNbHidd
ajzO3bI7MM3dv8HlxAktmTRr7wZm+2ZGjVPW6b3YfnppLLbqHoqOgA==
-----END PUBLIC KEY-----
";

const SERVICE: &str = "berth.test";

fn generated(algorithm: &'static rcgen::SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(algorithm).expect("rcgen generates the key")
}

fn certificate_pem(key: &KeyPair) -> String {
    CertificateParams::new(vec!["tokens.test".to_owned()])
        .expect("params")
        .self_signed(key)
        .expect("self-signed")
        .pem()
}

fn kinds(pem: &str) -> Vec<KeyKind> {
    let keys = TokenKeys::parse(pem.as_bytes()).expect("keys load");
    keys.describe()
        .into_iter()
        .map(|(kind, _, _)| kind)
        .collect()
}

#[test]
fn each_key_kind_loads_from_a_certificate_or_a_public_key() {
    assert_eq!(kinds(RSA2048_PEM), [KeyKind::Rsa]);
    for (algorithm, kind) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, KeyKind::P256),
        (&rcgen::PKCS_ECDSA_P384_SHA384, KeyKind::P384),
        (&rcgen::PKCS_ED25519, KeyKind::Ed25519),
    ] {
        let key = generated(algorithm);
        assert_eq!(kinds(&certificate_pem(&key)), [kind]);
        assert_eq!(kinds(&key.public_key_pem()), [kind]);
    }
}

#[test]
fn a_bundle_loads_every_key_in_file_order() {
    let p256 = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
    let ed25519 = generated(&rcgen::PKCS_ED25519);
    let bundle = format!(
        "{}\n{RSA2048_PEM}{}",
        certificate_pem(&p256),
        ed25519.public_key_pem()
    );
    assert_eq!(
        kinds(&bundle),
        [KeyKind::P256, KeyKind::Rsa, KeyKind::Ed25519]
    );
}

#[test]
fn key_ids_match_libtrust_and_rfc7638() {
    let keys = TokenKeys::parse(RSA2048_PEM.as_bytes()).expect("keys load");
    let described = keys.describe();
    assert_eq!(
        described,
        [(KeyKind::Rsa, RSA2048_LIBTRUST_ID, RSA2048_THUMBPRINT)]
    );
}

#[test]
fn unusable_files_are_refused_naming_the_file_not_the_key() {
    let p256 = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
    let cases: [(&str, String, &str); 7] = [
        ("empty", String::new(), "no PEM certificate or public key"),
        (
            "text",
            "not a key at all\n".to_owned(),
            "no PEM certificate",
        ),
        ("small-rsa", RSA1024_PEM.to_owned(), "1024 bits"),
        ("secp256k1", SECP256K1_PEM.to_owned(), "P-256 or P-384"),
        ("private", p256.serialize_pem(), "\"PRIVATE KEY\""),
        (
            "bad-cert",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
            "cannot be parsed",
        ),
        (
            "bundle-with-bad",
            format!("{RSA2048_PEM}{RSA1024_PEM}"),
            "PEM block 2",
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &text).expect("write");
        let error = TokenKeys::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{name} loads"));
        assert!(
            error.contains(&path.display().to_string()),
            "{name}: {error}"
        );
        assert!(error.contains(expected), "{name}: {error}");
        // No line of the key's base64 reaches the message.
        for line in text
            .lines()
            .filter(|line| line.len() > 20 && !line.starts_with("---"))
        {
            assert!(!error.contains(line), "{name}: {error}");
        }
    }
    let missing = dir.path().join("missing.pem");
    let error = TokenKeys::load(&missing)
        .err()
        .expect("a missing file fails");
    assert!(error.contains("missing.pem"), "{error}");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn bearer_of(pem: &str) -> Bearer {
    let config = BearerConfig {
        realm: "https://auth.test/token".to_owned(),
        service: SERVICE.to_owned(),
        cert: "unused.pem".into(),
    };
    Bearer::with_keys(&config, TokenKeys::parse(pem.as_bytes()).expect("keys"))
}

fn claims(patch: Value) -> Value {
    let mut claims = json!({
        "iss": "tokens.test", "sub": "alice", "aud": SERVICE, "exp": now() + 300,
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}],
    });
    for (key, value) in patch.as_object().expect("object") {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn sign(key: &KeyPair, algorithm: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    let encoding = match algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_der(&key.serialize_der()),
        _ => EncodingKey::from_ec_der(&key.serialize_der()),
    };
    jsonwebtoken::encode(&header, claims, &encoding).expect("token signs")
}

#[test]
fn a_good_token_verifies_and_names_its_user() {
    for (algorithm, jose) in [
        (&rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256),
        (&rcgen::PKCS_ECDSA_P384_SHA384, Algorithm::ES384),
        (&rcgen::PKCS_ED25519, Algorithm::EdDSA),
    ] {
        let key = generated(algorithm);
        let bearer = bearer_of(&certificate_pem(&key));
        let token = bearer
            .verify(&sign(&key, jose, None, &claims(json!({}))))
            .expect("verifies");
        assert_eq!(token.subject.as_deref(), Some("alice"));
        let scope = Scope::repository(&"team/app".parse().expect("name"), &["pull", "push"]);
        assert!(token.grants(&scope));
    }
}

#[test]
fn kid_must_name_a_configured_key() {
    let key = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
    let other = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
    let bundle = format!("{}{}", other.public_key_pem(), key.public_key_pem());
    let bearer = bearer_of(&bundle);
    let ids = bearer.keys.describe();
    let (libtrust, thumbprint) = (ids[1].1.to_owned(), ids[1].2.to_owned());
    let good = claims(json!({}));
    for kid in [libtrust.as_str(), thumbprint.as_str()] {
        let token = sign(&key, Algorithm::ES256, Some(kid), &good);
        assert!(bearer.verify(&token).is_ok(), "kid {kid}");
    }
    let unknown = sign(&key, Algorithm::ES256, Some("AAAA:BBBB"), &good);
    assert_eq!(bearer.verify(&unknown).err(), Some(Invalid::UnknownKid));
    // The other key's kid on a token this key signed: the named key does not verify it.
    let crossed = sign(&key, Algorithm::ES256, Some(ids[0].1), &good);
    assert_eq!(bearer.verify(&crossed).err(), Some(Invalid::Signature));
}

#[test]
fn bad_claims_and_signatures_are_refused() {
    let key = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
    let bearer = bearer_of(&key.public_key_pem());
    let refused = |patch: Value| bearer.verify(&sign(&key, Algorithm::ES256, None, &claims(patch)));
    let expired = now() - LEEWAY_SECONDS - 30;
    assert_eq!(
        refused(json!({"exp": expired})).err(),
        Some(Invalid::Claims("expired".into()))
    );
    assert!(
        refused(json!({"exp": now() - 10})).is_ok(),
        "within the leeway"
    );
    assert_eq!(
        refused(json!({"nbf": now() + LEEWAY_SECONDS + 60})).err(),
        Some(Invalid::Claims("not yet valid".into()))
    );
    assert_eq!(
        refused(json!({"aud": "another"})).err(),
        Some(Invalid::Claims("wrong audience".into()))
    );
    assert!(refused(json!({"aud": ["another", SERVICE]})).is_ok());
    assert_eq!(
        refused(json!({"exp": null})).err(),
        Some(Invalid::Claims("no exp claim".into()))
    );
    assert_eq!(
        refused(json!({"aud": null})).err(),
        Some(Invalid::Claims("no aud claim".into()))
    );
    // An anonymous token: no user, only its access.
    let anonymous = refused(json!({"sub": "", "access": []})).expect("anonymous verifies");
    assert_eq!(anonymous.subject, None);
    // Signed by another key; an algorithm this key does not allow; tampered; garbage.
    let other = generated(&rcgen::PKCS_ECDSA_P256_SHA256);
    let foreign = sign(&other, Algorithm::ES256, None, &claims(json!({})));
    assert_eq!(bearer.verify(&foreign).err(), Some(Invalid::Signature));
    let ed = generated(&rcgen::PKCS_ED25519);
    let eddsa = sign(&ed, Algorithm::EdDSA, None, &claims(json!({})));
    assert_eq!(
        bearer.verify(&eddsa).err(),
        Some(Invalid::AlgorithmNotAllowed)
    );
    let good = sign(&key, Algorithm::ES256, None, &claims(json!({})));
    let (body, signature) = good.rsplit_once('.').expect("three parts");
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{body}.{flipped}{}", &signature[1..]);
    assert_eq!(bearer.verify(&tampered).err(), Some(Invalid::Signature));
    for garbage in ["", "a.b", "a.b.c", "..", "eyJhbGciOiJub25lIn0.e30."] {
        assert_eq!(
            bearer.verify(garbage).err(),
            Some(Invalid::Malformed),
            "{garbage}"
        );
    }
}

#[test]
fn the_authorization_header_must_be_one_bearer_token() {
    let key = generated(&rcgen::PKCS_ED25519);
    let bearer = bearer_of(&key.public_key_pem());
    let good = sign(&key, Algorithm::EdDSA, None, &claims(json!({})));
    let headers = |values: &[String]| {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(value).expect("value"));
        }
        map
    };
    assert!(bearer.token(&headers(&[])).expect("none").is_none());
    let token = bearer.token(&headers(&[format!("bearer {good}")]));
    assert_eq!(
        token.expect("ok").expect("some").subject.as_deref(),
        Some("alice")
    );
    let twice = headers(&[format!("Bearer {good}"), format!("Bearer {good}")]);
    assert_eq!(bearer.token(&twice).err(), Some(Invalid::TwoHeaders));
    let basic = headers(&["Basic YWxpY2U6c2VjcmV0".to_owned()]);
    assert_eq!(bearer.token(&basic).err(), Some(Invalid::NotBearer));
    let long = headers(&[format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES))]);
    assert_eq!(bearer.token(&long).err(), Some(Invalid::TooLong));
}

#[test]
fn each_request_needs_its_scopes() {
    let text = |method: Method, path: &str, query: Option<&str>| -> Vec<String> {
        scopes(&method, path, query)
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let digest = format!("sha256:{}", "a".repeat(64));
    let cases: Vec<(Method, String, Option<&str>, Vec<&str>)> = vec![
        (Method::GET, "/v2/".into(), None, vec![]),
        (Method::GET, "/v2/_oci/ext/discover".into(), None, vec![]),
        (Method::GET, "/metrics".into(), None, vec![]),
        (Method::GET, "/v2/no/such/route".into(), None, vec![]),
        (
            Method::GET,
            "/v2/_catalog".into(),
            None,
            vec!["registry:catalog:*"],
        ),
        (
            Method::GET,
            "/v2/a/b/tags/list".into(),
            None,
            vec!["repository:a/b:pull"],
        ),
        (
            Method::HEAD,
            "/v2/a/manifests/v1".into(),
            None,
            vec!["repository:a:pull"],
        ),
        (
            Method::PUT,
            "/v2/a/manifests/v1".into(),
            None,
            vec!["repository:a:pull,push"],
        ),
        (
            Method::DELETE,
            "/v2/a/manifests/v1".into(),
            None,
            vec!["repository:a:delete"],
        ),
        (
            Method::GET,
            format!("/v2/a/blobs/{digest}"),
            None,
            vec!["repository:a:pull"],
        ),
        (
            Method::DELETE,
            format!("/v2/a/blobs/{digest}"),
            None,
            vec!["repository:a:delete"],
        ),
        (
            Method::GET,
            format!("/v2/a/referrers/{digest}"),
            None,
            vec!["repository:a:pull"],
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/".into(),
            None,
            vec!["repository:a:pull,push"],
        ),
        (
            Method::GET,
            "/v2/a/blobs/uploads/x".into(),
            None,
            vec!["repository:a:pull,push"],
        ),
        (
            Method::DELETE,
            "/v2/a/blobs/uploads/x".into(),
            None,
            vec!["repository:a:pull,push"],
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/".into(),
            Some("mount=sha256:00&from=other/repo"),
            vec!["repository:a:pull,push", "repository:other/repo:pull"],
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/".into(),
            Some("mount=sha256:00&from=a"),
            vec!["repository:a:pull,push"],
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/".into(),
            Some("from=other"),
            vec!["repository:a:pull,push"],
        ),
        // Names the router refuses never reach a scope (nor a header).
        (Method::GET, "/v2/a%22b/manifests/v1".into(), None, vec![]),
        (Method::GET, "/v2/A,b/manifests/v1".into(), None, vec![]),
    ];
    for (method, path, query, expected) in cases {
        assert_eq!(
            text(method.clone(), &path, query),
            expected,
            "{method} {path}"
        );
    }
}

#[test]
fn grants_follow_type_name_and_actions() {
    let key = generated(&rcgen::PKCS_ED25519);
    let bearer = bearer_of(&key.public_key_pem());
    let access = json!([
        {"type": "repository", "name": "a", "actions": ["pull"]},
        {"type": "repository", "name": "b", "actions": ["*"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]);
    let token = sign(
        &key,
        Algorithm::EdDSA,
        None,
        &claims(json!({"access": access})),
    );
    let token = bearer.verify(&token).expect("verifies");
    let repo = |name: &str, actions: &[&'static str]| {
        Scope::repository(&name.parse().expect("name"), actions)
    };
    assert!(token.grants(&repo("a", &["pull"])));
    assert!(!token.grants(&repo("a", &["pull", "push"])));
    assert!(!token.grants(&repo("a", &["delete"])));
    assert!(token.grants(&repo("b", &["pull", "push"])));
    assert!(token.grants(&repo("b", &["delete"])));
    assert!(!token.grants(&repo("c", &["pull"])));
    let catalog = scopes(&Method::GET, "/v2/_catalog", None);
    assert!(token.grants(&catalog[0]));
}

#[test]
fn challenges_carry_realm_service_scopes_and_error() {
    let bearer = bearer_of(RSA2048_PEM);
    assert_eq!(
        bearer.challenge(&[], None),
        r#"Bearer realm="https://auth.test/token",service="berth.test""#
    );
    let needed = scopes(
        &Method::POST,
        "/v2/a/blobs/uploads/",
        Some("mount=sha256:00&from=b"),
    );
    assert_eq!(
        bearer.challenge(&needed, Some("insufficient_scope")),
        r#"Bearer realm="https://auth.test/token",service="berth.test",scope="repository:a:pull,push repository:b:pull",error="insufficient_scope""#
    );
    let response = bearer.unauthorized(&needed, Some("invalid_token"), true);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .expect("text");
    assert!(
        challenge.ends_with(r#",error="invalid_token""#),
        "{challenge}"
    );
}
