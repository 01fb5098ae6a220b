//! Single sign-on (`http.auth.openid`): berth as an OpenID Connect client of a real provider
//! (panva's oidc-provider, tests/oidc) in Chromium, and of an adversarial one
//! (tests/tokens/oidc_idp.py) over plain HTTP (tests/src/oidc.rs has both).
//!
//! The contract tested: `GET /zot/auth/login?provider=NAME[&callback_ui=PATH]` answers 400 for
//! an unknown provider, else a 302 to the provider's authorization endpoint with
//! response_type=code, client_id, redirect_uri (`http://ADDR/zot/auth/callback/NAME`), the
//! scopes, state, nonce and PKCE S256, and sets `berth_oidc=<state>; Path=/zot/auth/callback;
//! HttpOnly; SameSite=Lax; Max-Age=600`. The callback takes a state only when it equals that
//! cookie and a pending login of that provider, once; it redeems the code
//! (client_secret_basic, code_verifier), verifies the ID token (signature by the provider's
//! JWKS, RS/PS/ES/EdDSA only, iss, aud, exp, nonce), reads userinfo, and takes the user from
//! `claimMapping.username` and the groups from `claimMapping.groups`. Success: a 200 page
//! setting `session=<64 hex>; Path=/; HttpOnly; SameSite=Strict`, clearing `berth_oidc`, with
//! a meta refresh to `callback_ui` when local, else /home. Any failure: a 401 page with a
//! `[role=alert]` and no session. The audit log has `login` / `login_failed` with method
//! `openid:NAME`. The groups drive `accessControl` as LDAP's do; an API key made by an SSO user
//! is the password of their user name for podman.

use std::path::Path;

use berth_tests::access::{start, ALL};
use berth_tests::browser::{require_browser, run_script};
use berth_tests::containers::{Containers, Store};
use berth_tests::oidc::{
    evil_idp_available, get_json, oidc_provider_available, query_param, EvilIdp, EvilMode,
    OidcProvider, Reply, UserAgent, ACCOUNTS,
};
use berth_tests::search::search_config;
use berth_tests::{authed, merge_patch, push_image, random_image, require_tool, run_ok, Berth};
use reqwest::Url;
use serde_json::{json, Value};
use sha2::Digest as _;

const CLIENT_ID: &str = "berth";
const CLIENT_SECRET: &str = "berth-secret";
const SCOPES: [&str; 4] = ["openid", "profile", "email", "groups"];
const STATE_COOKIE: &str = "berth_oidc";
const SESSION_COOKIE: &str = "session";
const CALLBACK_PATH: &str = "/zot/auth/callback";

/// One `http.auth.openid.providers` entry for the test client.
fn provider_entry(name: &str, issuer: &str) -> Value {
    json!({
        "name": name, "issuer": issuer, "clientid": CLIENT_ID, "clientsecret": CLIENT_SECRET,
        "scopes": SCOPES, "claimMapping": {"username": "email", "groups": "groups"},
    })
}

/// `team/**` is the `devs` group's alone (no default policy); root is the admin.
fn access() -> Value {
    json!({
        "repositories": {
            "team/**": {"policies": [{"groups": ["devs"], "actions": ALL}], "defaultPolicy": []},
        },
        "adminPolicy": {"users": ["root"], "actions": ALL},
    })
}

/// berth behind htpasswd (tests/src/access.rs's users) with API keys, the UI, `providers`
/// and a JSON audit log at `audit`.
fn start_berth(providers: Value, audit: &Path) -> Berth {
    let mut patch = search_config();
    merge_patch(
        &mut patch,
        &json!({
            "http": {"auth": {"apikey": true, "openid": {"providers": providers}}},
            "extensions": {"ui": {"enable": true}},
            "log": {"format": "json", "audit": audit},
        }),
    );
    start(access(), patch)
}

/// The authorization endpoint in discovery at `issuer`.
fn authorization_endpoint(issuer: &str) -> String {
    let (status, discovery) = get_json(&format!("{issuer}/.well-known/openid-configuration"), None);
    assert_eq!(status, 200, "{discovery}");
    discovery["authorization_endpoint"]
        .as_str()
        .expect("authorization_endpoint")
        .to_owned()
}

/// A login berth started: where it sent the browser, the state, the PKCE challenge.
struct LoginStart {
    authorize: Url,
    state: String,
    challenge: String,
}

/// `GET /zot/auth/login?provider=NAME[&callback_ui=..]`, which must redirect to
/// `authorization_endpoint` with every parameter of a code flow with PKCE and set the state
/// cookie.
#[track_caller]
fn start_login(
    agent: &mut UserAgent,
    berth: &Berth,
    provider: &str,
    authorization_endpoint: &str,
    callback_ui: Option<&str>,
) -> LoginStart {
    let mut url = format!("{}/zot/auth/login?provider={provider}", berth.url);
    if let Some(target) = callback_ui {
        url = berth_tests::oidc::with_query(&url, &[("callback_ui", target)]);
    }
    let reply = agent.get(&url);
    assert_eq!(reply.status, 302, "{}", reply.describe());
    let authorize = reply.location().expect("Location");
    assert!(
        authorize.as_str().starts_with(authorization_endpoint),
        "{authorize} is not at {authorization_endpoint}"
    );
    let param = |name: &str| query_param(&authorize, name).unwrap_or_default();
    assert_eq!(param("response_type"), "code", "{authorize}");
    assert_eq!(param("client_id"), CLIENT_ID, "{authorize}");
    assert_eq!(
        param("redirect_uri"),
        format!("{}{CALLBACK_PATH}/{provider}", berth.url),
        "{authorize}"
    );
    let scopes: Vec<String> = param("scope").split(' ').map(str::to_owned).collect();
    for scope in SCOPES {
        assert!(scopes.iter().any(|s| s == scope), "{scope}: {authorize}");
    }
    let state = param("state");
    let nonce = param("nonce");
    assert!(state.len() >= 22, "a guessable state: {authorize}");
    assert!(
        nonce.len() >= 22 && nonce != state,
        "a guessable nonce: {authorize}"
    );
    assert_eq!(param("code_challenge_method"), "S256", "{authorize}");
    let challenge = param("code_challenge");
    assert!(
        challenge.len() == 43
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not an S256 challenge: {authorize}"
    );

    let cookie = reply
        .set_cookie(STATE_COOKIE)
        .unwrap_or_else(|| panic!("no {STATE_COOKIE} cookie: {}", reply.describe()));
    assert_eq!(cookie.value, state, "{}", cookie.raw);
    assert_eq!(
        cookie.attribute("Path"),
        Some(CALLBACK_PATH),
        "{}",
        cookie.raw
    );
    assert_eq!(cookie.attribute("HttpOnly"), Some(""), "{}", cookie.raw);
    assert_eq!(cookie.attribute("SameSite"), Some("Lax"), "{}", cookie.raw);
    assert_eq!(cookie.attribute("Max-Age"), Some("600"), "{}", cookie.raw);
    assert!(
        reply.set_cookie(SESSION_COOKIE).is_none(),
        "{}",
        reply.describe()
    );
    LoginStart {
        authorize,
        state,
        challenge,
    }
}

/// The adversarial IdP answers the authorization request at once: the callback URL it sends
/// the browser to (not followed).
#[track_caller]
fn callback_from(agent: &mut UserAgent, start: &LoginStart) -> Url {
    let reply = agent.get(start.authorize.as_str());
    assert_eq!(reply.status, 302, "{}", reply.describe());
    let callback = reply.location().expect("Location");
    assert_eq!(
        query_param(&callback, "state").as_deref(),
        Some(start.state.as_str())
    );
    callback
}

/// `url` with query parameter `name` set to `value` (added when missing).
fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    pairs.push((name.to_owned(), value.to_owned()));
    let mut changed = url.clone();
    changed.query_pairs_mut().clear().extend_pairs(&pairs);
    changed
}

/// A refused callback: 401, an HTML page with an alert, no session.
#[track_caller]
fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.describe());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{what}: {}",
        reply.describe()
    );
    assert!(
        reply.body.contains("role=\"alert\""),
        "{what}: no [role=alert]: {}",
        reply.describe()
    );
    let session = reply.set_cookie(SESSION_COOKIE);
    assert!(
        session.is_none_or(|cookie| cookie.clears()),
        "{what}: a session cookie on a refusal: {}",
        reply.describe()
    );
}

/// A successful callback: 200, the session cookie, the state cookie cleared, a meta refresh
/// to `target`. Returns the session token.
#[track_caller]
fn assert_logged_in(reply: &Reply, target: &str) -> String {
    assert_eq!(reply.status, 200, "{}", reply.describe());
    let session = reply
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("no session cookie: {}", reply.describe()));
    assert!(
        session.value.len() == 64 && session.value.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        session.raw
    );
    assert_eq!(session.attribute("Path"), Some("/"), "{}", session.raw);
    assert_eq!(session.attribute("HttpOnly"), Some(""), "{}", session.raw);
    assert_eq!(
        session.attribute("SameSite"),
        Some("Strict"),
        "{}",
        session.raw
    );
    let state = reply
        .set_cookie(STATE_COOKIE)
        .unwrap_or_else(|| panic!("{STATE_COOKIE} is not cleared: {}", reply.describe()));
    assert!(
        state.clears(),
        "{STATE_COOKIE} is not cleared: {}",
        state.raw
    );
    assert_eq!(
        refresh_target(&reply.body).as_deref(),
        Some(target),
        "{}",
        reply.describe()
    );
    session.value.clone()
}

/// The URL of `<meta http-equiv="refresh" content="0;url=URL">` in `html`.
fn refresh_target(html: &str) -> Option<String> {
    let start = html.find("http-equiv=\"refresh\"")?;
    let tag_start = html[..start].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let content = tag.split("content=\"").nth(1)?.split('"').next()?;
    let content = content
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&amp;", "&");
    let (delay, url) = content.split_once(';')?;
    (delay.trim() == "0").then_some(())?;
    let url = url.trim();
    let url = url
        .strip_prefix("url=")
        .or_else(|| url.strip_prefix("URL="))?;
    Some(url.trim_matches('\'').to_owned())
}

/// Who `/home` names with `session` (`#user`), None when anonymous.
fn home_user(berth: &Berth, session: &str) -> Option<String> {
    let response = berth_tests::http()
        .get(format!("{}/home", berth.url))
        .header("cookie", format!("{SESSION_COOKIE}={session}"))
        .send()
        .expect("GET /home");
    assert_eq!(response.status(), 200);
    let html = response.text().expect("body");
    let at = html.find("id=\"user\"")?;
    let rest = &html[at..];
    let text = &rest[rest.find('>')? + 1..];
    Some(text[..text.find('<')?].trim().to_owned())
}

/// The audit log's events (`fields` of each JSON line that has an `event`).
fn audit_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line.get("fields").cloned().unwrap_or(line))
        .filter(|fields| fields.get("event").is_some())
        .collect()
}

/// Waits until the audit log has at least `count` events `event` by `method` (and `subject`
/// when given); returns them all.
#[track_caller]
fn wait_for_audit(
    path: &Path,
    event: &str,
    method: &str,
    subject: Option<&str>,
    count: usize,
) -> Vec<Value> {
    let matching = |events: &[Value]| {
        events
            .iter()
            .filter(|fields| {
                fields["event"] == event
                    && fields["method"] == method
                    && subject.is_none_or(|subject| fields["subject"] == subject)
            })
            .count()
    };
    berth_tests::wait_for(
        &format!("{count} audit events {event} by {method} {subject:?}"),
        || std::fs::read_to_string(path).unwrap_or_default(),
        |_| matching(&audit_events(path)) >= count,
    );
    audit_events(path)
}

/// How many times the adversarial IdP was asked to redeem a code.
fn token_requests(evil: &EvilIdp) -> usize {
    evil.requests()
        .iter()
        .filter(|request| request["path"] == "/token")
        .count()
}

/// `GET /v2/_zot/ext/mgmt`: the providers' names by key; the body must not hold the secret.
fn mgmt_providers(berth: &Berth) -> Value {
    let response = berth_tests::http()
        .get(format!("{}/v2/_zot/ext/mgmt", berth.url))
        .send()
        .expect("GET mgmt");
    assert_eq!(response.status(), 200);
    let text = response.text().expect("body");
    assert!(
        !text.contains(CLIENT_SECRET),
        "mgmt shows the secret: {text}"
    );
    let mgmt: Value = serde_json::from_str(&text).expect("mgmt is JSON");
    mgmt["http"]["auth"]["openid"]["providers"].clone()
}

#[test]
fn a_browser_logs_in_at_a_real_provider_whose_groups_and_api_key_drive_access() {
    if !require_browser() || !oidc_provider_available() || !require_tool("podman") {
        return;
    }
    let provider = OidcProvider::start();
    let logs = tempfile::tempdir().expect("tempdir");
    let audit = logs.path().join("audit.log");
    let berth = start_berth(
        json!({"oidc": provider_entry("Test IdP", provider.issuer())}),
        &audit,
    );
    let callback = format!("{}{CALLBACK_PATH}/oidc", berth.url);
    provider.register_client(CLIENT_ID, CLIENT_SECRET, &[&callback]);
    push_image(
        &authed("root"),
        &berth.url,
        "team/app",
        "v1",
        &random_image(1, 256),
    );
    assert_eq!(
        mgmt_providers(&berth)["oidc"]["name"],
        json!("Test IdP"),
        "mgmt names the provider"
    );

    let args = |account: (&str, &str, &str, &str), may_read: bool| {
        let (login, password, email, _) = account;
        json!({
            "provider": "oidc", "provider_name": "Test IdP", "issuer": provider.issuer(),
            "login": login, "password": password, "user": email,
            "repo": "team/app", "may_read": may_read, "api_key": may_read,
        })
    };
    // alice (group devs) reads team/app in the UI and makes a key.
    let alice = run_script("ui_openid:sso_login", &berth.url, &args(ACCOUNTS[0], true));
    let key = alice.data["api_key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key: {}", alice.data))
        .to_owned();
    let browser_callback = Url::parse(
        alice.data["callback_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no callback URL: {}", alice.data)),
    )
    .expect("a URL");
    assert!(
        browser_callback.as_str().starts_with(&callback),
        "{browser_callback}"
    );
    // bob (group ops) is refused there.
    run_script("ui_openid:sso_login", &berth.url, &args(ACCOUNTS[1], false));

    // The key is the password of alice@example.org for podman: push and pull team/app.
    let containers = Containers::new(&berth.addr);
    let podman = |store: Store| containers.cmd("podman", store);
    let local = containers.stage_image(&random_image(2, 4096));
    let remote = format!("{}/team/app:v2", berth.addr);
    let alice_email = ACCOUNTS[0].2;
    run_ok(podman(Store::Build).args(["login", "-u", alice_email, "-p", &key, &berth.addr]));
    run_ok(podman(Store::Build).args(["push", "--quiet", &local, &remote]));
    run_ok(podman(Store::Pull).args(["pull", "--quiet", &remote]));
    let tags = berth_tests::http()
        .get(format!("{}/v2/team/app/tags/list", berth.url))
        .basic_auth(alice_email, Some(&key))
        .send()
        .expect("tags");
    assert_eq!(tags.status(), 200);
    let bob_with_key = berth_tests::http()
        .get(format!("{}/v2/team/app/tags/list", berth.url))
        .basic_auth(ACCOUNTS[1].2, Some(&key))
        .send()
        .expect("tags");
    assert_eq!(
        bob_with_key.status(),
        401,
        "alice's key is not bob's password"
    );

    // The code the browser brought back, replayed into a fresh login (its own state and
    // cookie): berth redeems it, the provider refuses it, the login fails.
    let old_code = query_param(&browser_callback, "code").expect("code");
    let mut agent = UserAgent::new();
    let authorize = authorization_endpoint(provider.issuer());
    let start = start_login(&mut agent, &berth, "oidc", &authorize, None);
    let refused_before = provider.log().matches("POST /token -> 400").count();
    let replay = with_param(&browser_callback, "state", &start.state);
    assert_eq!(query_param(&replay, "code"), Some(old_code));
    let reply = agent.get(replay.as_str());
    assert_refused(&reply, "a replayed code");
    // The provider logs a request once its answer is sent, maybe after berth has it.
    berth_tests::wait_for(
        "the provider's refusal of the replayed code in its log",
        || provider.log(),
        |log| log.matches("POST /token -> 400").count() > refused_before,
    );
    // The browser's callback as it was: its state is spent.
    let old_state = query_param(&browser_callback, "state").expect("state");
    let host = browser_callback.host_str().expect("host").to_owned();
    agent.set(&host, CALLBACK_PATH, STATE_COOKIE, &old_state);
    let reply = agent.get(browser_callback.as_str());
    assert_refused(&reply, "the browser's callback again");

    wait_for_audit(&audit, "login_failed", "openid:oidc", None, 2);
    let events = wait_for_audit(&audit, "login", "openid:oidc", Some(ACCOUNTS[1].2), 1);
    let alice_logins = events
        .iter()
        .filter(|e| e["event"] == "login" && e["subject"] == json!(alice_email))
        .count();
    assert!(alice_logins >= 1, "{events:?}");
    let audit_text = std::fs::read_to_string(&audit).unwrap_or_default();
    for secret in [CLIENT_SECRET, key.as_str(), ACCOUNTS[0].1, ACCOUNTS[1].1] {
        assert!(!berth.log().contains(secret), "{secret} reached the log");
        assert!(
            !audit_text.contains(secret),
            "{secret} reached the audit log"
        );
    }
}

#[test]
fn the_callback_refuses_bad_tokens_states_and_cookies() {
    if !evil_idp_available() {
        return;
    }
    let evil = EvilIdp::start(CLIENT_ID, CLIENT_SECRET);
    let logs = tempfile::tempdir().expect("tempdir");
    let audit = logs.path().join("audit.log");
    // `other` is the same IdP under another name; `down` has no IdP at all: discovery is
    // lazy, so berth starts anyway.
    let berth = start_berth(
        json!({
            "evil": provider_entry("Evil IdP", evil.issuer()),
            "other": provider_entry("Other IdP", evil.issuer()),
            "down": provider_entry("Down IdP", "http://127.0.0.1:1"),
        }),
        &audit,
    );
    let authorize = authorization_endpoint(evil.issuer());
    let host = "127.0.0.1";

    // mgmt and the login page name every provider.
    let providers = mgmt_providers(&berth);
    for (key, name) in [
        ("evil", "Evil IdP"),
        ("other", "Other IdP"),
        ("down", "Down IdP"),
    ] {
        assert_eq!(providers[key]["name"], json!(name), "{providers}");
    }
    let login_page = UserAgent::new().get(&format!("{}/login", berth.url));
    assert_eq!(login_page.status, 200);
    for (key, name) in [("evil", "Evil IdP"), ("other", "Other IdP")] {
        assert!(
            login_page
                .body
                .contains(&format!("href=\"/zot/auth/login?provider={key}")),
            "{}",
            login_page.body
        );
        assert!(
            login_page.body.contains(&format!("Log in with {name}")),
            "{}",
            login_page.body
        );
    }

    // An unknown provider; a provider whose IdP is down (refused, and berth goes on).
    let mut agent = UserAgent::new();
    let unknown = agent.get(&format!("{}/zot/auth/login?provider=nobody", berth.url));
    assert_eq!(unknown.status, 400, "{}", unknown.describe());
    assert!(unknown.set_cookie(STATE_COOKIE).is_none());
    let down = agent.get(&format!("{}/zot/auth/login?provider=down", berth.url));
    assert!(
        down.status >= 400 && down.set_cookie(STATE_COOKIE).is_none(),
        "{}",
        down.describe()
    );

    // A good login: /home names the user; berth redeemed the code as a confidential client
    // with the PKCE verifier of its challenge.
    let start = start_login(&mut agent, &berth, "evil", &authorize, None);
    let callback = callback_from(&mut agent, &start);
    assert_eq!(
        callback.as_str().split('?').next(),
        Some(format!("{}{CALLBACK_PATH}/evil", berth.url).as_str())
    );
    let reply = agent.get(callback.as_str());
    let session = assert_logged_in(&reply, "/home");
    assert_eq!(
        home_user(&berth, &session).as_deref(),
        Some("alice@example.org")
    );
    let requests = evil.requests();
    let token_request = requests
        .iter()
        .rev()
        .find(|request| request["path"] == "/token")
        .unwrap_or_else(|| panic!("berth never redeemed the code: {requests:?}"));
    assert_eq!(
        token_request["outcome"],
        json!("token (good)"),
        "{token_request}"
    );
    assert!(
        token_request["authorization"]
            .as_str()
            .is_some_and(|auth| auth.starts_with("Basic ")),
        "{token_request}"
    );
    let verifier = token_request["form"]["code_verifier"]
        .as_str()
        .expect("code_verifier");
    assert_eq!(
        berth_tests::oidc::base64url(&sha2::Sha256::digest(verifier.as_bytes())),
        start.challenge
    );
    assert!(
        requests.iter().any(|r| r["path"] == "/userinfo"),
        "userinfo was not read: {requests:?}"
    );
    wait_for_audit(&audit, "login", "openid:evil", Some("alice@example.org"), 1);

    // The same callback again, cookie and all: a state is good once. Refusals of a state
    // come before the code is redeemed: berth does not even ask the IdP.
    let redeemed = token_requests(&evil);
    agent.set(host, CALLBACK_PATH, STATE_COOKIE, &start.state);
    let again = agent.get(callback.as_str());
    assert_refused(&again, "the same callback twice");
    assert_eq!(
        token_requests(&evil),
        redeemed,
        "a spent state's code was redeemed"
    );

    // Logout: not from another site; from this one, the session ends.
    let logout = |origin: &str| {
        berth_tests::http()
            .post(format!("{}/zot/auth/logout", berth.url))
            .header("cookie", format!("{SESSION_COOKIE}={session}"))
            .header("origin", origin)
            .send()
            .expect("POST logout")
            .status()
            .as_u16()
    };
    assert_ne!(logout("http://evil.example"), 200, "a cross-site logout");
    assert_eq!(
        home_user(&berth, &session).as_deref(),
        Some("alice@example.org")
    );
    assert_eq!(logout(&berth.url), 200);
    assert_eq!(home_user(&berth, &session), None, "logged out");

    // Where the login returns: a local callback_ui, else /home.
    for (callback_ui, target) in [
        ("/explore?search=app", "/explore?search=app"),
        ("http://evil.example/", "/home"),
        ("//evil.example/", "/home"),
    ] {
        let start = start_login(&mut agent, &berth, "evil", &authorize, Some(callback_ui));
        let callback = callback_from(&mut agent, &start);
        assert_logged_in(&agent.get(callback.as_str()), target);
    }

    // Every bad token: refused, no session, audited.
    for mode in EvilMode::BAD {
        evil.set_mode(mode);
        let start = start_login(&mut agent, &berth, "evil", &authorize, None);
        let callback = callback_from(&mut agent, &start);
        assert_refused(&agent.get(callback.as_str()), &format!("{mode:?}"));
    }
    evil.set_mode(EvilMode::Good);
    wait_for_audit(
        &audit,
        "login_failed",
        "openid:evil",
        None,
        EvilMode::BAD.len(),
    );

    // A state changed in the callback: it matches neither the cookie nor a pending login.
    let start = start_login(&mut agent, &berth, "evil", &authorize, None);
    let callback = callback_from(&mut agent, &start);
    let redeemed = token_requests(&evil);
    let mut tampered_state = start.state.clone();
    let last = tampered_state.pop().expect("a state");
    tampered_state.push(if last == 'A' { 'B' } else { 'A' });
    assert_refused(
        &agent.get(with_param(&callback, "state", &tampered_state).as_str()),
        "a tampered state",
    );
    // The same, cookie changed to match: still no such pending login.
    agent.set(host, CALLBACK_PATH, STATE_COOKIE, &tampered_state);
    assert_refused(
        &agent.get(with_param(&callback, "state", &tampered_state).as_str()),
        "a forged state and cookie",
    );

    // A callback without the state cookie (another browser: a login CSRF).
    let start = start_login(&mut agent, &berth, "evil", &authorize, None);
    let callback = callback_from(&mut agent, &start);
    assert_refused(
        &UserAgent::new().get(callback.as_str()),
        "a callback without the cookie",
    );

    // A valid state and code delivered to another provider's callback.
    let start = start_login(&mut agent, &berth, "evil", &authorize, None);
    let callback = callback_from(&mut agent, &start);
    let mut elsewhere = callback.clone();
    elsewhere.set_path(&format!("{CALLBACK_PATH}/other"));
    assert_refused(
        &agent.get(elsewhere.as_str()),
        "another provider's callback",
    );

    // The IdP sends the user back with an error.
    let start = start_login(&mut agent, &berth, "evil", &authorize, None);
    let denied = Url::parse(&berth_tests::oidc::with_query(
        &format!("{}{CALLBACK_PATH}/evil", berth.url),
        &[("error", "access_denied"), ("state", start.state.as_str())],
    ))
    .expect("a URL");
    assert_refused(&agent.get(denied.as_str()), "error=access_denied");
    // No code of a refused state was redeemed (tampered, forged, no cookie, another
    // provider's path, an error).
    assert_eq!(
        token_requests(&evil),
        redeemed,
        "a refused state's code was redeemed"
    );

    // Only the good logins logged anyone in; nothing secret was written.
    let events = audit_events(&audit);
    let logins = events
        .iter()
        .filter(|e| e["event"] == "login" && e["method"] == "openid:evil")
        .count();
    assert_eq!(
        logins, 4,
        "the good login and the three callback_ui ones: {events:?}"
    );
    let audit_text = std::fs::read_to_string(&audit).unwrap_or_default();
    assert!(
        !berth.log().contains(CLIENT_SECRET),
        "the secret reached the log"
    );
    assert!(
        !audit_text.contains(CLIENT_SECRET),
        "the secret reached the audit log"
    );
}
