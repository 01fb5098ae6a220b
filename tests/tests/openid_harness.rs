//! The OpenID Connect test peers on their own, without berth (tests/src/oidc.rs): the real
//! provider (oidc-provider) serves discovery and its public keys, takes a client registered
//! after it started, and runs a code flow with PKCE through its login and consent pages to an
//! ID token whose signature jwcrypto verifies, refusing a wrong password, a replayed code, a
//! missing PKCE challenge and a wrong verifier; it exits when its stdin closes. The
//! adversarial IdP issues each token mode as its name says, and its token endpoint holds
//! clients to client_secret_basic and PKCE. In Chromium, the provider's pages take a login
//! and a consent to a stand-in client on another site (tests/browser/ui_openid.py `idp_pages`).

use berth_tests::browser::{require_browser, run_script, Page, StaticSite};
use berth_tests::oidc::{
    evil_idp_available, get_json, jwt_parts, oidc_provider_available, query_param, redeem_code,
    verify_id_token, AuthorizationRequest, EvilIdp, EvilMode, OidcProvider, UserAgent, ACCOUNTS,
    EVIL_SUB,
};
use serde_json::{json, Value};

const CLIENT_ID: &str = "selftest";
const CLIENT_SECRET: &str = "selftest-secret";
/// Nothing listens there: the flows stop at the redirect back.
const REDIRECT_URI: &str = "http://127.0.0.1:9/zot/auth/callback/oidc";
const SCOPE: &str = "openid profile email groups";

fn now() -> i64 {
    i64::try_from(berth_tests::tokens::now()).expect("time fits i64")
}

/// `aud` is the client, as a string or in an array.
fn audience_has(claims: &Value, client: &str) -> bool {
    claims["aud"] == json!(client)
        || claims["aud"]
            .as_array()
            .is_some_and(|list| list.contains(&json!(client)))
}

#[test]
fn a_real_provider_runs_the_code_flow_with_pkce() {
    if !oidc_provider_available() {
        return;
    }
    let mut provider = OidcProvider::start();
    let issuer = provider.issuer().to_owned();
    assert!(issuer.starts_with("http://localhost:"), "{issuer}");
    assert!(
        provider.listening().contains(&"127.0.0.1".to_owned()),
        "{:?}",
        provider.listening()
    );

    let (status, discovery) = get_json(&format!("{issuer}/.well-known/openid-configuration"), None);
    assert_eq!(status, 200, "{discovery}");
    assert_eq!(discovery["issuer"], json!(issuer));
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
    ] {
        let url = discovery[endpoint].as_str().unwrap_or_default();
        assert!(url.starts_with(&issuer), "{endpoint}: {discovery}");
    }
    assert!(
        discovery["code_challenge_methods_supported"]
            .as_array()
            .is_some_and(|methods| methods.contains(&json!("S256"))),
        "{discovery}"
    );
    for scope in SCOPE.split(' ') {
        assert!(
            discovery["scopes_supported"]
                .as_array()
                .is_some_and(|scopes| scopes.contains(&json!(scope))),
            "{scope}: {discovery}"
        );
    }
    let (status, jwks) = get_json(discovery["jwks_uri"].as_str().expect("jwks_uri"), None);
    assert_eq!(status, 200, "{jwks}");
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(!keys.is_empty(), "{jwks}");
    for key in keys {
        assert!(key["kid"].is_string() && key["kty"].is_string(), "{key}");
        assert!(key.get("d").is_none(), "a private key is published: {key}");
    }

    // Clients come after the start; metadata the provider refuses is a 400 with its reason.
    provider.register_client(CLIENT_ID, CLIENT_SECRET, &[REDIRECT_URI]);
    let (status, refused) = provider.try_register_client("broken", "broken-secret", &["not a url"]);
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"].is_string(), "{refused}");

    let authorize = discovery["authorization_endpoint"]
        .as_str()
        .expect("authorize");
    let token_endpoint = discovery["token_endpoint"]
        .as_str()
        .expect("token endpoint");
    let mut agent = UserAgent::new();

    // A wrong password is refused on the provider's own page.
    let request = AuthorizationRequest::new(authorize, CLIENT_ID, REDIRECT_URI, SCOPE, true);
    let login_page = agent.follow(&request.url, |_| false);
    assert_eq!(login_page.status, 200, "{}", login_page.describe());
    let action = berth_tests::oidc::form_action(&login_page.body, "idp-login", &login_page.url)
        .unwrap_or_else(|| panic!("no login form: {}", login_page.describe()));
    let wrong = agent.post_form(
        action.as_str(),
        &[("login", "alice"), ("password", "bob-pw")],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.describe());
    assert!(wrong.body.contains("role=\"alert\""), "{}", wrong.body);

    // The right one, then consent: back to the client with a code, the state and the issuer.
    let (login, password, email, group) = ACCOUNTS[0];
    let callback = provider.log_in(&mut agent, &request.url, login, password);
    assert!(callback.as_str().starts_with(REDIRECT_URI), "{callback}");
    assert_eq!(query_param(&callback, "state"), Some(request.state.clone()));
    assert_eq!(query_param(&callback, "iss"), Some(issuer.clone()));
    let code = query_param(&callback, "code").unwrap_or_else(|| panic!("no code: {callback}"));

    let (status, tokens) = redeem_code(
        token_endpoint,
        CLIENT_ID,
        CLIENT_SECRET,
        &code,
        REDIRECT_URI,
        Some(&request.pkce.verifier),
    );
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], json!("Bearer"), "{tokens}");
    let id_token = tokens["id_token"].as_str().expect("id_token");
    let (header, claims) = jwt_parts(id_token);
    assert_eq!(header["alg"], json!("RS256"), "{header}");
    assert!(
        keys.iter().any(|key| key["kid"] == header["kid"]),
        "kid {} is not in the JWKS",
        header["kid"]
    );
    assert_eq!(claims["iss"], json!(issuer), "{claims}");
    assert_eq!(claims["sub"], json!(login), "{claims}");
    assert_eq!(claims["nonce"], json!(request.nonce), "{claims}");
    assert!(audience_has(&claims, CLIENT_ID), "{claims}");
    assert!(
        claims["exp"].as_i64().is_some_and(|exp| exp > now()),
        "{claims}"
    );
    if evil_idp_available() {
        let verified = verify_id_token(id_token, &jwks, None);
        assert_eq!(verified["valid_jwks"], json!(true), "jwcrypto: {verified}");
    }
    // The profile claims come from userinfo (the ID token of a code flow holds none).
    let access_token = tokens["access_token"].as_str().expect("access_token");
    let (status, userinfo) = get_json(
        discovery["userinfo_endpoint"].as_str().expect("userinfo"),
        Some(access_token),
    );
    assert_eq!(status, 200, "{userinfo}");
    assert_eq!(userinfo["sub"], json!(login), "{userinfo}");
    assert_eq!(userinfo["email"], json!(email), "{userinfo}");
    assert_eq!(userinfo["groups"], json!([group]), "{userinfo}");

    // A code is good once.
    let (status, replayed) = redeem_code(
        token_endpoint,
        CLIENT_ID,
        CLIENT_SECRET,
        &code,
        REDIRECT_URI,
        Some(&request.pkce.verifier),
    );
    assert_eq!(status, 400, "{replayed}");
    assert_eq!(replayed["error"], json!("invalid_grant"), "{replayed}");

    // PKCE is required: no challenge is an error sent back to the client.
    let plain = AuthorizationRequest::new(authorize, CLIENT_ID, REDIRECT_URI, SCOPE, false);
    let refused = provider.log_in(&mut agent, &plain.url, login, password);
    assert!(refused.as_str().starts_with(REDIRECT_URI), "{refused}");
    assert_eq!(
        query_param(&refused, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&refused, "code"), None);

    // A verifier that is not the challenge's (the session and grant skip both pages now).
    let again = AuthorizationRequest::new(authorize, CLIENT_ID, REDIRECT_URI, SCOPE, true);
    let callback = provider.log_in(&mut agent, &again.url, login, password);
    let code = query_param(&callback, "code").unwrap_or_else(|| panic!("no code: {callback}"));
    let (status, wrong_verifier) = redeem_code(
        token_endpoint,
        CLIENT_ID,
        CLIENT_SECRET,
        &code,
        REDIRECT_URI,
        Some(&request.pkce.verifier),
    );
    assert_eq!(status, 400, "{wrong_verifier}");
    assert_eq!(wrong_verifier["error"], json!("invalid_grant"));

    let log = provider.log();
    assert!(log.contains("POST /token -> 200"), "{log}");
    assert!(
        provider.close_stdin_and_wait(),
        "the provider outlived its stdin"
    );
}

#[test]
fn the_adversarial_idp_issues_each_mode_as_named() {
    if !evil_idp_available() {
        return;
    }
    let client_secret = "evil-secret";
    let idp = EvilIdp::start(CLIENT_ID, client_secret);
    let issuer = idp.issuer().to_owned();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    let (status, discovery) = get_json(&format!("{issuer}/.well-known/openid-configuration"), None);
    assert_eq!(status, 200);
    assert_eq!(discovery["issuer"], json!(issuer));
    let jwks = idp.jwks();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    let kid = jwks["keys"][0]["kid"].clone();
    let authorize = discovery["authorization_endpoint"]
        .as_str()
        .expect("authorize");
    let token_endpoint = discovery["token_endpoint"].as_str().expect("token");
    let userinfo_endpoint = discovery["userinfo_endpoint"].as_str().expect("userinfo");

    // One authorization: the code it sends straight back.
    let code_for = |request: &AuthorizationRequest| -> String {
        let mut agent = UserAgent::new();
        let back = agent.get(&request.url);
        assert_eq!(back.status, 302, "{}", back.describe());
        let location = back.location().expect("Location");
        assert!(location.as_str().starts_with(REDIRECT_URI), "{location}");
        assert_eq!(query_param(&location, "state"), Some(request.state.clone()));
        query_param(&location, "code").unwrap_or_else(|| panic!("no code: {location}"))
    };

    for mode in std::iter::once(EvilMode::Good).chain(EvilMode::BAD) {
        idp.set_mode(mode);
        let request = AuthorizationRequest::new(authorize, CLIENT_ID, REDIRECT_URI, SCOPE, true);
        let code = code_for(&request);
        let (status, tokens) = redeem_code(
            token_endpoint,
            CLIENT_ID,
            client_secret,
            &code,
            REDIRECT_URI,
            Some(&request.pkce.verifier),
        );
        assert_eq!(status, 200, "{mode:?}: {tokens}");
        let id_token = tokens["id_token"].as_str().expect("id_token");
        let verified = idp.verify(id_token);
        let (header, claims) = (&verified["header"], &verified["claims"]);
        let signed_by_jwks = verified["valid_jwks"] == json!(true);
        let what = format!("{mode:?}: {verified}");
        let (_, userinfo) = get_json(userinfo_endpoint, tokens["access_token"].as_str());

        // What differs from a good token, mode by mode; everything else is as good.
        let expect_alg = match mode {
            EvilMode::AlgNone => "none",
            EvilMode::Hs256 => "HS256",
            _ => "RS256",
        };
        assert_eq!(header["alg"], json!(expect_alg), "{what}");
        assert_eq!(
            signed_by_jwks,
            !matches!(
                mode,
                EvilMode::BadSignature | EvilMode::AlgNone | EvilMode::Hs256
            ),
            "{what}"
        );
        assert_eq!(
            verified["valid_hmac"],
            json!(mode == EvilMode::Hs256),
            "{what}"
        );
        if mode == EvilMode::BadSignature {
            assert_eq!(header["kid"], kid, "{what}");
        }
        let other_issuer = issuer.replace("127.0.0.1", "localhost");
        let expect_iss = if mode == EvilMode::OtherIssuer {
            &other_issuer
        } else {
            &issuer
        };
        assert_eq!(claims["iss"], json!(expect_iss), "{what}");
        assert_eq!(
            audience_has(claims, CLIENT_ID),
            mode != EvilMode::WrongAudience,
            "{what}"
        );
        let expired = claims["exp"].as_i64().is_some_and(|exp| exp < now() - 600);
        assert_eq!(expired, mode == EvilMode::Expired, "{what}");
        match mode {
            EvilMode::NoNonce => assert!(claims.get("nonce").is_none(), "{what}"),
            EvilMode::WrongNonce => assert_ne!(claims["nonce"], json!(request.nonce), "{what}"),
            _ => assert_eq!(claims["nonce"], json!(request.nonce), "{what}"),
        }
        assert_eq!(claims["sub"], json!(EVIL_SUB), "{what}");
        if mode == EvilMode::NoEmail {
            assert!(claims.get("email").is_none(), "{what}");
            assert!(userinfo.get("email").is_none(), "{mode:?}: {userinfo}");
        } else {
            assert!(claims["email"].is_string(), "{what}");
        }
        let userinfo_sub = if mode == EvilMode::UserinfoOtherSub {
            json!("mallory-0002")
        } else {
            json!(EVIL_SUB)
        };
        assert_eq!(userinfo["sub"], userinfo_sub, "{mode:?}: {userinfo}");
    }

    // The token endpoint: client_secret_basic with the right secret, PKCE, one use.
    idp.set_mode(EvilMode::Good);
    let request = AuthorizationRequest::new(authorize, CLIENT_ID, REDIRECT_URI, SCOPE, true);
    let code = code_for(&request);
    let verifier = Some(request.pkce.verifier.as_str());
    let redeem = |secret: &str, verifier: Option<&str>| {
        redeem_code(
            token_endpoint,
            CLIENT_ID,
            secret,
            &code,
            REDIRECT_URI,
            verifier,
        )
    };
    assert_eq!(redeem("wrong", verifier).0, 401);
    assert_eq!(
        redeem(client_secret, Some(&"x".repeat(43))).0,
        400,
        "a wrong verifier"
    );
    // The code was spent by the wrong verifier's try: one use, whatever the outcome.
    assert_eq!(redeem(client_secret, verifier).0, 400, "a spent code");
    let no_pkce = AuthorizationRequest::new(authorize, CLIENT_ID, REDIRECT_URI, SCOPE, false);
    let back = UserAgent::new().get(&no_pkce.url);
    let location = back.location().expect("Location");
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&location, "code"), None);

    let requests = idp.requests();
    let outcomes: Vec<&str> = requests
        .iter()
        .filter_map(|request| request["outcome"].as_str())
        .collect();
    assert!(outcomes.contains(&"token (good)"), "{outcomes:?}");
    assert!(
        outcomes.iter().any(|o| o.starts_with("refused: PKCE")),
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| o.contains("code_verifier does not match")),
        "{outcomes:?}"
    );
}

/// The provider's pages in Chromium (the part of tests/browser/ui_openid.py that needs no
/// berth): `localhost` reaches it, a wrong password and the consent page work without console
/// errors, and the code that comes back to a stand-in client at 127.0.0.1 redeems.
#[test]
fn the_real_provider_s_pages_work_in_chromium() {
    if !require_browser() || !oidc_provider_available() {
        return;
    }
    let provider = OidcProvider::start();
    let client = StaticSite::start(vec![
        (
            "/zot/auth/callback/oidc",
            Page::html("<!DOCTYPE html><title>client</title><p>back at the client</p>"),
        ),
        ("/favicon.ico", Page::new("image/x-icon", Vec::new())),
    ]);
    let redirect_uri = format!("{}/zot/auth/callback/oidc", client.url);
    provider.register_client(CLIENT_ID, CLIENT_SECRET, &[&redirect_uri]);
    let (_, discovery) = get_json(
        &format!("{}/.well-known/openid-configuration", provider.issuer()),
        None,
    );
    let authorize = discovery["authorization_endpoint"]
        .as_str()
        .expect("authorize");
    let request = AuthorizationRequest::new(authorize, CLIENT_ID, &redirect_uri, SCOPE, true);
    let (login, password, _, _) = ACCOUNTS[1];
    let run = run_script(
        "ui_openid:idp_pages",
        &client.url,
        &json!({
            "authorize_url": request.url, "issuer": provider.issuer(),
            "login": login, "password": password, "redirect_uri": redirect_uri,
        }),
    );
    let callback = reqwest::Url::parse(run.data["callback_url"].as_str().expect("callback_url"))
        .expect("a URL");
    assert_eq!(query_param(&callback, "state"), Some(request.state.clone()));
    let code = query_param(&callback, "code").unwrap_or_else(|| panic!("no code: {callback}"));
    let (status, tokens) = redeem_code(
        discovery["token_endpoint"]
            .as_str()
            .expect("token endpoint"),
        CLIENT_ID,
        CLIENT_SECRET,
        &code,
        &redirect_uri,
        Some(&request.pkce.verifier),
    );
    assert_eq!(status, 200, "{tokens}");
    let (_, claims) = jwt_parts(tokens["id_token"].as_str().expect("id_token"));
    assert_eq!(claims["sub"], json!(login), "{claims}");
    assert!(
        provider.log().contains("POST /interaction/"),
        "{}",
        provider.log()
    );
}
