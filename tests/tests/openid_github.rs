//! GitHub's OAuth2 (`http.auth.openid.providers.github`, zot's handling): the user is the
//! account's primary verified e-mail and the groups its organisations. GitHub itself cannot be
//! reached from the test machine, so the endpoints are tests/tokens/oidc_idp.py's GitHub-shaped
//! ones (authorize, access_token answering errors with 200 as GitHub does, /user/emails,
//! /user/orgs refusing a request without a User-Agent), through berth's `authurl`, `tokenurl`
//! and `apiurl` (GitHub Enterprise's keys).

use berth_tests::access::{start, ALL};
use berth_tests::oidc::{evil_idp_available, query_param, EvilIdp, UserAgent};
use berth_tests::search::search_config;
use berth_tests::{authed, merge_patch, push_image, random_image};
use serde_json::json;

const CLIENT_ID: &str = "berth-gh";
const CLIENT_SECRET: &str = "gh-secret";

#[test]
fn a_github_login_takes_the_primary_email_and_the_organisations_as_groups() {
    if !evil_idp_available() {
        return;
    }
    let github = EvilIdp::start(CLIENT_ID, CLIENT_SECRET);
    let base = github.issuer().to_owned();
    let mut patch = search_config();
    merge_patch(
        &mut patch,
        &json!({
            "http": {"auth": {"openid": {"providers": {"github": {
                "clientid": CLIENT_ID, "clientsecret": CLIENT_SECRET,
                "authurl": format!("{base}/login/oauth/authorize"),
                "tokenurl": format!("{base}/login/oauth/access_token"),
                "apiurl": format!("{base}/api"),
            }}}}},
            "extensions": {"ui": {"enable": true}},
        }),
    );
    let berth = start(
        json!({
            "repositories": {"team/**": {"policies": [{"groups": ["devs"], "actions": ALL}]}},
            "adminPolicy": {"users": ["root"], "actions": ALL},
        }),
        patch,
    );
    push_image(
        &authed("root"),
        &berth.url,
        "team/app",
        "v1",
        &random_image(1, 128),
    );

    let mut agent = UserAgent::new();
    let start = agent.get(&format!("{}/zot/auth/login?provider=github", berth.url));
    assert_eq!(start.status, 302, "{}", start.describe());
    let authorize = start.location().expect("Location");
    assert!(authorize
        .as_str()
        .starts_with(&format!("{base}/login/oauth/authorize?")));
    assert_eq!(
        query_param(&authorize, "scope").as_deref(),
        Some("read:org user:email")
    );
    assert_eq!(
        query_param(&authorize, "nonce"),
        None,
        "OAuth2 has no nonce"
    );
    assert_eq!(
        query_param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let back = agent.get(authorize.as_str());
    assert_eq!(back.status, 302, "{}", back.describe());
    let callback = back.location().expect("callback");
    let done = agent.get(callback.as_str());
    assert_eq!(done.status, 200, "{}\n{}", done.describe(), github.log());
    let session = done
        .set_cookie("session")
        .expect("session cookie")
        .value
        .clone();

    // The session is alice's primary address, and the `devs` organisation lets her read the
    // group's repository.
    let page = |path: &str| {
        berth_tests::http()
            .get(format!("{}{path}", berth.url))
            .header("cookie", format!("session={session}"))
            .send()
            .expect("GET")
    };
    let home = page("/home").text().expect("home");
    assert!(home.contains(">alice@example.org<"), "{home}");
    assert!(!home.contains("alice-old@example.org"));
    assert_eq!(page("/image/team%2Fapp").status(), 200);

    // The client secret went in the form (GitHub's way), and the API was asked with the token.
    let requests = github.requests();
    let token = requests
        .iter()
        .find(|request| request["path"] == "/login/oauth/access_token")
        .expect("a token request");
    assert_eq!(token["form"]["client_secret"], CLIENT_SECRET);
    assert!(token["form"]["code_verifier"]
        .as_str()
        .is_some_and(|v| v.len() >= 43));
    for path in ["/api/user/emails", "/api/user/orgs"] {
        assert!(
            requests
                .iter()
                .any(|request| request["path"] == path && request["outcome"] == "github api"),
            "{path}: {requests:?}"
        );
    }

    // The same callback again: the state is spent; a code GitHub refuses (its 200 with an
    // error) is a refused login too.
    let again = agent.get(callback.as_str());
    assert_eq!(again.status, 401, "{}", again.describe());
    let start = agent.get(&format!("{}/zot/auth/login?provider=github", berth.url));
    let state = query_param(&start.location().expect("Location"), "state").expect("state");
    let forged = format!(
        "{}/zot/auth/callback/github?code=not-a-code&state={state}",
        berth.url
    );
    let refused = agent.get(&forged);
    assert_eq!(refused.status, 401, "{}", refused.describe());
    assert!(
        refused.body.contains("bad_verification_code"),
        "{}",
        refused.body
    );
    assert!(refused
        .set_cookie("session")
        .is_none_or(|cookie| cookie.clears()));
}
