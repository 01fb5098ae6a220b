//! ID token checks with keys made here (the whole flow against real providers is
//! tests/tests/openid.rs).
use super::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const ISSUER: &str = "https://sso.example.com";
const CLIENT: &str = "berth";
const NONCE: &str = "n-0123456789";

struct Signer {
    encoding: EncodingKey,
    jwk: Value,
}

fn signer(kid: &str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let point = pair.public_key_raw();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Signer {
        encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..]),
                    "kid": kid, "use": "sig", "alg": "ES256"}),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn good_claims() -> Value {
    json!({"iss": ISSUER, "aud": CLIENT, "sub": "u-1", "exp": now() + 300, "iat": now(),
           "nonce": NONCE, "email": "alice@example.org", "groups": ["devs", "ops", "devs"]})
}

fn sign(signer: &Signer, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &signer.encoding).expect("sign")
}

fn provider(published: &[&Signer]) -> (Provider, Discovery) {
    let config = OpenIdProvider {
        key: "oidc".into(),
        name: "SSO".into(),
        kind: ProviderKind::OpenIdConnect {
            issuer: ISSUER.into(),
        },
        client_id: Some(CLIENT.into()),
        client_secret: Some("secret".into()),
        credentials_file: None,
        scopes: vec!["openid".into()],
        username_claim: "email".into(),
        groups_claim: "groups".into(),
    };
    let provider = Provider::new(&config).expect("provider");
    let discovery = parse_discovery(
        &json!({"issuer": ISSUER, "authorization_endpoint": format!("{ISSUER}/auth"),
                "token_endpoint": format!("{ISSUER}/token"), "jwks_uri": format!("{ISSUER}/jwks")}),
        ISSUER,
    )
    .expect("discovery");
    let keys = published
        .iter()
        .map(|signer| serde_json::from_value(signer.jwk.clone()).expect("jwk"))
        .collect();
    // Fresh keys: the checks below never reach the network.
    provider.cached.lock().expect("lock").keys = Some((Instant::now(), keys));
    (provider, discovery)
}

fn verify(provider: &Provider, discovery: &Discovery, token: &str) -> Result<Value, LoginError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = http_client().expect("client");
    runtime.block_on(provider.verify_id_token(&client, discovery, token, NONCE))
}

#[test]
fn a_good_token_verifies_and_names_the_user_and_groups() {
    let key = signer("k1");
    let (provider, discovery) = provider(&[&key]);
    let claims = verify(
        &provider,
        &discovery,
        &sign(&key, Some("k1"), &good_claims()),
    )
    .expect("verifies");
    assert_eq!(
        provider
            .identity(&[&claims, &Value::Null])
            .expect("identity"),
        LoggedIn {
            user: "alice@example.org".into(),
            groups: vec!["devs".into(), "ops".into()],
        }
    );
    // Without a kid, the only key that fits is used.
    verify(&provider, &discovery, &sign(&key, None, &good_claims())).expect("no kid");
}

#[test]
fn every_broken_promise_of_a_token_is_refused() {
    let key = signer("k1");
    let stranger = signer("k1");
    let (provider, discovery) = provider(&[&key]);
    let with = |patch: Value| {
        let mut claims = good_claims();
        for (name, value) in patch.as_object().expect("object") {
            match value {
                Value::Null => {
                    claims.as_object_mut().expect("object").remove(name);
                }
                value => claims[name] = value.clone(),
            }
        }
        sign(&key, Some("k1"), &claims)
    };
    let cases = [
        (
            "another issuer",
            with(json!({"iss": "https://evil.example.com"})),
        ),
        ("expired", with(json!({"exp": now() - 3600}))),
        ("another audience", with(json!({"aud": "someone-else"}))),
        ("audience list without us", with(json!({"aud": ["a", "b"]}))),
        (
            "another party",
            with(json!({"aud": [CLIENT, "b"], "azp": "b"})),
        ),
        ("wrong nonce", with(json!({"nonce": "n-other"}))),
        ("no nonce", with(json!({"nonce": null}))),
        ("no exp", with(json!({"exp": null}))),
        ("no sub", with(json!({"sub": null}))),
        ("issued in the future", with(json!({"iat": now() + 3600}))),
        (
            "unknown signer",
            sign(&stranger, Some("k1"), &good_claims()),
        ),
        ("unknown kid", sign(&key, Some("k2"), &good_claims())),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (case, token) in cases {
        assert!(
            matches!(
                verify(&provider, &discovery, &token),
                Err(LoginError::Invalid(_))
            ),
            "{case} was accepted"
        );
    }
    // HS256 keyed with the client secret, and alg none: refused before any key is looked at.
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good_claims(),
        &EncodingKey::from_secret(b"secret"),
    )
    .expect("sign");
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&good_claims().to_string())
    );
    for token in [hs256, none] {
        assert!(matches!(
            verify(&provider, &discovery, &token),
            Err(LoginError::Invalid(_))
        ));
    }
}

#[test]
fn two_keys_without_a_kid_are_ambiguous() {
    let (first, second) = (signer("a"), signer("b"));
    let (provider, discovery) = provider(&[&first, &second]);
    assert!(verify(&provider, &discovery, &sign(&first, None, &good_claims())).is_err());
    verify(
        &provider,
        &discovery,
        &sign(&second, Some("b"), &good_claims()),
    )
    .expect("by kid");
}

#[test]
fn names_and_groups_come_from_the_mapped_claims() {
    let (mut provider, _) = provider(&[]);
    provider.config.username_claim = "preferred_username".into();
    provider.config.groups_claim = "roles".into();
    let id = json!({"sub": "1", "preferred_username": "bob"});
    let info = json!({"sub": "1", "roles": "admins"});
    assert_eq!(
        provider.identity(&[&id, &info]).expect("identity"),
        LoggedIn {
            user: "bob".into(),
            groups: vec!["admins".into()],
        }
    );
    for bad in [
        json!({}),
        json!({"preferred_username": ""}),
        json!({"preferred_username": "a:b"}),
        json!({"preferred_username": "a\nb"}),
        json!({"preferred_username": 7}),
    ] {
        assert!(provider.identity(&[&bad]).is_err(), "{bad}");
    }
}

#[test]
fn discovery_must_name_the_configured_issuer() {
    let document = json!({"issuer": "https://other.example.com", "authorization_endpoint": "a",
                          "token_endpoint": "t", "jwks_uri": "j"});
    assert!(parse_discovery(&document, ISSUER).is_err());
    let mut slash = document.clone();
    slash["issuer"] = json!(format!("{ISSUER}/"));
    assert_eq!(
        parse_discovery(&slash, ISSUER).expect("ok").issuer,
        format!("{ISSUER}/")
    );
    let mut missing = slash.clone();
    missing.as_object_mut().expect("object").remove("jwks_uri");
    assert!(parse_discovery(&missing, ISSUER).is_err());
}

#[test]
fn the_pkce_challenge_is_rfc_7636s() {
    // RFC 7636, appendix B.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}
