//! Bearer tokens (`http.auth.bearer`) on the real binary, with raw HTTP and tokens minted by an
//! independent signer (tests/tokens/issuer.py): every key kind verifies; a request without a
//! token gets the exact challenge with the scope it needs; every bad token (expired, not yet
//! valid, wrong audience, wrong signer, unknown kid, `alg: none`, HMAC with the public key,
//! an embedded `jwk` or `x5c`, garbage, two headers, Basic) is `invalid_token` and changes
//! nothing; scopes are enforced per repository and action (a push token cannot delete); the
//! token's user also goes through `http.accessControl`; mgmt stays open; an unusable `cert`
//! stops `berth serve`.

use std::path::Path;

use berth_tests::api::{code_of, header, parts};
use berth_tests::tokens::{
    claims, issuer_available, make_keys, mint, now, repository, start_berth, SERVICE,
};
use berth_tests::{random_image, serve_refused, sha256_digest, Berth, Client, Image};
use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};

/// Never contacted: these tests mint their tokens directly.
const REALM: &str = "http://127.0.0.1:9/token";
const REPO: &str = "team/app";

fn challenge(scope: Option<&str>, error: Option<&str>) -> String {
    let mut text = format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\"");
    if let Some(scope) = scope {
        text.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        text.push_str(&format!(",error=\"{error}\""));
    }
    text
}

/// Asserts a 401 `UNAUTHORIZED` with exactly this challenge (no body for HEAD).
#[track_caller]
fn assert_challenged(request: RequestBuilder, scope: Option<&str>, error: Option<&str>) {
    let (status, headers, body) = parts(request.send().expect("request"));
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 401, "{text}");
    let values: Vec<_> = headers.get_all("www-authenticate").iter().collect();
    assert_eq!(values.len(), 1, "one challenge");
    assert_eq!(
        values[0].to_str().expect("ASCII"),
        challenge(scope, error),
        "{text}"
    );
    if !body.is_empty() {
        assert_eq!(code_of(&body).as_deref(), Some("UNAUTHORIZED"), "{text}");
    }
}

/// The keys in `dir` and berth trusting `cert` (relative to the keys), plus `patch`.
fn setup(dir: &Path, cert: &str, patch: Value) -> (Value, Berth) {
    let keys = make_keys(&dir.join("keys"));
    let cert = keys[cert]["crt"].as_str().expect("path").to_owned();
    let berth = start_berth(REALM, &cert, patch);
    (keys, berth)
}

/// An RS256 token from the trusted `rsa` key with its kid.
fn spec(keys: &Value, claims: Value) -> Value {
    json!({"key": keys["rsa"]["key"], "alg": "RS256",
           "header": {"kid": keys["rsa"]["kid"]}, "claims": claims})
}

fn with_token(token: &str) -> Client {
    berth_tests::tokens::client(token)
}

/// An admin's view: a token with every action on the test's repositories and the catalog.
fn admin(keys: &Value) -> Client {
    let mut access: Vec<Value> = [REPO, "new", "copy"]
        .iter()
        .map(|repo| repository(repo, &["*"]))
        .collect();
    access.push(json!({"type": "registry", "name": "catalog", "actions": ["*"]}));
    let access = Value::Array(access);
    with_token(&mint(&[spec(keys, claims("root", access))])[0])
}

fn catalog(client: &Client, url: &str) -> Value {
    let response = client
        .get(format!("{url}/v2/_catalog"))
        .send()
        .expect("catalog");
    let (status, _, body) = parts(response);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<Value>(&body).expect("json")["repositories"].clone()
}

fn blob_status(client: &Client, url: &str, repo: &str, digest: &str) -> u16 {
    let response = client
        .head(format!("{url}/v2/{repo}/blobs/{digest}"))
        .send()
        .expect("HEAD");
    response.status().as_u16()
}

fn seed(admin: &Client, url: &str) -> Image {
    let image = random_image(1, 1000);
    berth_tests::push_image(admin, url, REPO, "v1", &image);
    image
}

#[test]
fn tokens_signed_by_each_key_kind_are_accepted() {
    if !issuer_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = make_keys(&dir.path().join("keys"));
    // A bundle: certificates and public keys of every kind in one file.
    let mut bundle = String::new();
    for (name, kind) in [
        ("rsa", "crt"),
        ("p256", "crt"),
        ("p384", "pub"),
        ("ed25519", "crt"),
    ] {
        let path = keys[name][kind].as_str().expect("path");
        bundle.push_str(&std::fs::read_to_string(path).expect("pem"));
    }
    let cert = dir.path().join("bundle.pem");
    std::fs::write(&cert, bundle).expect("bundle");
    let berth = start_berth(REALM, cert.to_str().expect("utf-8"), json!({}));
    let good = claims(
        "alice",
        json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]),
    );
    let mut specs = Vec::new();
    for (name, alg) in [
        ("rsa", "RS256"),
        ("rsa", "RS512"),
        ("rsa", "PS256"),
        ("rsa", "PS384"),
        ("p256", "ES256"),
        ("p384", "ES384"),
        ("ed25519", "EdDSA"),
    ] {
        let key = &keys[name];
        for header in [
            json!({}),
            json!({"kid": key["kid"]}),
            json!({"kid": key["thumbprint"]}),
        ] {
            specs.push(json!({"key": key["key"], "alg": alg, "header": header, "claims": good}));
        }
    }
    for (spec, token) in specs.iter().zip(mint(&specs)) {
        let response = with_token(&token)
            .get(format!("{}/v2/_catalog", berth.url))
            .send();
        let (status, _, body) = parts(response.expect("catalog"));
        assert_eq!(status, 200, "{spec}: {}", String::from_utf8_lossy(&body));
    }
    // The bundle does not hold rsa-other; ES256 is not RSA's; ES384 is not P-256's.
    let refused = [
        json!({"key": keys["rsa-other"]["key"], "alg": "RS256", "claims": good}),
        json!({"key": keys["p256"]["key"], "alg": "ES384", "claims": good}),
        json!({"key": keys["p384"]["key"], "alg": "ES256", "claims": good}),
    ];
    for (spec, token) in refused.iter().zip(mint(&refused)) {
        let request = with_token(&token).get(format!("{}/v2/_catalog", berth.url));
        let (status, headers, _) = parts(request.send().expect("catalog"));
        assert_eq!(status, 401, "{spec}");
        let value = header(&headers, "www-authenticate").expect("challenge");
        assert!(
            value.ends_with(",error=\"invalid_token\""),
            "{spec}: {value}"
        );
    }
}

#[test]
fn no_token_gets_the_challenge_with_the_scope_it_needs() {
    if !issuer_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let search = json!({"extensions": {"search": {"enable": true}, "metrics": {}}});
    let (keys, berth) = setup(dir.path(), "rsa", search);
    let url = &berth.url;
    let admin = admin(&keys);
    let image = seed(&admin, url);
    let digest = &image.digest;
    let other = sha256_digest(b"other");
    let anonymous = berth_tests::http();
    let cases: Vec<(RequestBuilder, Option<String>)> = vec![
        (anonymous.get(format!("{url}/v2/")), None),
        (anonymous.get(format!("{url}/v2/_oci/ext/discover")), None),
        (anonymous.get(format!("{url}/metrics")), None),
        (
            anonymous.post(format!("{url}/v2/_zot/ext/search")),
            Some("registry:catalog:*".into()),
        ),
        (
            anonymous.get(format!("{url}/v2/_catalog")),
            Some("registry:catalog:*".into()),
        ),
        (
            anonymous.get(format!("{url}/v2/{REPO}/tags/list")),
            Some(format!("repository:{REPO}:pull")),
        ),
        (
            anonymous.get(format!("{url}/v2/{REPO}/manifests/v1")),
            Some(format!("repository:{REPO}:pull")),
        ),
        (
            anonymous.head(format!("{url}/v2/{REPO}/manifests/v1")),
            Some(format!("repository:{REPO}:pull")),
        ),
        (
            anonymous
                .put(format!("{url}/v2/{REPO}/manifests/v2"))
                .body(image.manifest.clone()),
            Some(format!("repository:{REPO}:pull,push")),
        ),
        (
            anonymous.delete(format!("{url}/v2/{REPO}/manifests/{digest}")),
            Some(format!("repository:{REPO}:delete")),
        ),
        (
            anonymous.post(format!(
                "{url}/v2/new/blobs/uploads/?mount={other}&from={REPO}"
            )),
            Some(format!("repository:new:pull,push repository:{REPO}:pull")),
        ),
        (
            anonymous.get(format!("{url}/v2/{REPO}/referrers/{digest}")),
            Some(format!("repository:{REPO}:pull")),
        ),
        // The router refuses the name before it could reach a header.
        (anonymous.get(format!("{url}/v2/a%22b/manifests/v1")), None),
        (
            anonymous.get(format!("{url}/v2/a%2Cscope=x/manifests/v1")),
            None,
        ),
    ];
    for (request, scope) in cases {
        assert_challenged(request, scope.as_deref(), None);
    }
    // With a token, a bad name is the router's NAME_INVALID, not a challenge.
    let token = mint(&[spec(&keys, claims("alice", json!([])))]).remove(0);
    let response = with_token(&token)
        .get(format!("{url}/v2/a%22b/manifests/v1"))
        .send();
    let (status, _, body) = parts(response.expect("GET"));
    assert_eq!(
        (status, code_of(&body).as_deref()),
        (400, Some("NAME_INVALID"))
    );
    // The probes and zot's mgmt need no token; mgmt says where tokens come from.
    for probe in ["/livez", "/readyz", "/startupz"] {
        let response = anonymous
            .get(format!("{url}{probe}"))
            .send()
            .expect("probe");
        assert_eq!(response.status().as_u16(), 200, "{probe}");
    }
    let response = anonymous
        .get(format!("{url}/v2/_zot/ext/mgmt"))
        .send()
        .expect("mgmt");
    let (status, _, body) = parts(response);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mgmt: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        mgmt["http"]["auth"],
        json!({"bearer": {"realm": REALM, "service": SERVICE}})
    );
    // Nothing changed.
    assert_eq!(catalog(&admin, url), json!([REPO]));
    assert_eq!(blob_status(&admin, url, "new", &other), 404);
}

#[test]
fn bad_tokens_are_invalid_and_change_nothing() {
    if !issuer_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (keys, berth) = setup(dir.path(), "rsa", json!({}));
    let url = &berth.url;
    let admin = admin(&keys);
    seed(&admin, url);
    let push = json!([repository(REPO, &["pull", "push"])]);
    let good = claims("alice", push.clone());
    let with = |patch: Value| {
        let mut claims = good.clone();
        berth_tests::merge_patch(&mut claims, &patch);
        claims
    };
    let rsa = &keys["rsa"];
    let other = &keys["rsa-other"];
    let trusted_kid = json!({"kid": rsa["kid"]});
    let specs = [
        // Within the leeway: accepted (checked below, not refused).
        spec(&keys, with(json!({"exp": now() - 30}))),
        spec(&keys, with(json!({"exp": now() - 61 - 5}))),
        spec(&keys, with(json!({"nbf": now() + 61 + 60}))),
        spec(&keys, with(json!({"aud": "another.service"}))),
        spec(&keys, with(json!({"aud": null}))),
        spec(&keys, with(json!({"exp": null}))),
        json!({"key": other["key"], "alg": "RS256", "claims": good}),
        json!({"key": other["key"], "alg": "RS256", "header": trusted_kid, "claims": good}),
        json!({"key": rsa["key"], "alg": "RS256", "header": {"kid": "ABCD:EFGH:IJKL"}, "claims": good}),
        json!({"alg": "none", "header": trusted_kid, "claims": good}),
        json!({"alg": "none", "claims": good}),
        json!({"alg": "HS256", "hmac_secret_file": rsa["crt"], "header": trusted_kid, "claims": good}),
        json!({"alg": "HS256", "hmac_secret_file": rsa["pub"], "claims": good}),
        // CVE-2025-24976: the header's key must never be the one that verifies.
        json!({"key": other["key"], "alg": "RS256",
               "header": {"kid": rsa["kid"], "jwk": other["jwk"]}, "claims": good}),
        json!({"key": other["key"], "alg": "RS256", "header": {"jwk": other["jwk"]}, "claims": good}),
        json!({"key": other["key"], "alg": "RS256", "header": {"x5c": [pem_body(other["crt"].as_str().expect("path"))]}, "claims": good}),
    ];
    let mut tokens = mint(&specs);
    let within_leeway = tokens.remove(0);
    let response = with_token(&within_leeway)
        .get(format!("{url}/v2/{REPO}/manifests/v1"))
        .send();
    assert_eq!(
        response.expect("GET").status().as_u16(),
        200,
        "exp 30 s ago is within the leeway"
    );
    let mut values: Vec<Vec<String>> = tokens.iter().map(|t| vec![format!("Bearer {t}")]).collect();
    let valid = mint(&[spec(&keys, good.clone())]).remove(0);
    values.extend([
        vec!["Bearer".to_owned()],
        vec!["Bearer not-a-jwt".to_owned()],
        vec!["Bearer a.b.c".to_owned()],
        vec![format!("Bearer {}", "A".repeat(17 * 1024))],
        vec![format!("Bearer {valid}x")],
        vec![format!("Bearer {valid}"), format!("Bearer {valid}")],
        vec!["Basic YWxpY2U6dG9rZW4gcGFzcw==".to_owned()],
        vec![format!("Token {valid}")],
    ]);
    let data = b"never stored".to_vec();
    let digest = sha256_digest(&data);
    let scope = format!("repository:{REPO}:pull,push");
    for value in &values {
        let mut request = berth_tests::http()
            .post(format!("{url}/v2/{REPO}/blobs/uploads/?digest={digest}"))
            .body(data.clone());
        for one in value {
            request = request.header("authorization", one.as_str());
        }
        assert_challenged(request, Some(scope.as_str()), Some("invalid_token"));
    }
    // The same valid token alone is accepted: the refusals were about the token.
    let response = with_token(&valid)
        .get(format!("{url}/v2/{REPO}/tags/list"))
        .send();
    assert_eq!(response.expect("GET").status().as_u16(), 200);
    assert_eq!(blob_status(&admin, url, REPO, &digest), 404);
    assert_eq!(catalog(&admin, url), json!([REPO]));
    // A refusal is logged with its reason and address, never the token.
    let log = berth_tests::wait_for(
        "the refusals",
        || berth.log(),
        |log| log.contains("kid names no configured key"),
    );
    assert!(
        log.contains("bearer token refused") && log.contains("127.0.0.1"),
        "{log}"
    );
    for token in tokens.iter().chain([&valid]) {
        let signature = token.rsplit('.').next().expect("part");
        assert!(
            signature.is_empty() || !log.contains(signature),
            "a token reached the log"
        );
    }
}

/// The base64 body of the PEM file at `path` (an `x5c` entry).
fn pem_body(path: &str) -> String {
    std::fs::read_to_string(path)
        .expect("pem")
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect()
}

#[test]
fn scopes_are_enforced_per_repository_and_action() {
    if !issuer_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (keys, berth) = setup(dir.path(), "rsa", json!({"extensions": {"search": {}}}));
    let url = &berth.url;
    let admin = admin(&keys);
    let image = seed(&admin, url);
    let layer = sha256_digest(&image.layers[0]);
    let specs = [
        spec(
            &keys,
            claims("carol", json!([repository("elsewhere", &["*"])])),
        ),
        spec(&keys, claims("bob", json!([repository(REPO, &["pull"])]))),
        spec(
            &keys,
            claims("alice", json!([repository(REPO, &["pull", "push"])])),
        ),
        spec(
            &keys,
            claims(
                "dave",
                json!([repository(REPO, &["delete"]), repository(REPO, &["pull"])]),
            ),
        ),
        spec(
            &keys,
            claims("erin", json!([repository("copy", &["pull", "push"])])),
        ),
    ];
    let tokens = mint(&specs);
    let (elsewhere, pull, push, delete, copy) = (
        with_token(&tokens[0]),
        with_token(&tokens[1]),
        with_token(&tokens[2]),
        with_token(&tokens[3]),
        with_token(&tokens[4]),
    );
    let insufficient = Some("insufficient_scope");
    let pull_scope = format!("repository:{REPO}:pull");
    assert_challenged(
        elsewhere.get(format!("{url}/v2/{REPO}/manifests/v1")),
        Some(pull_scope.as_str()),
        insufficient,
    );
    assert_challenged(
        elsewhere.head(format!("{url}/v2/{REPO}/manifests/v1")),
        Some(pull_scope.as_str()),
        insufficient,
    );
    assert_challenged(
        pull.get(format!("{url}/v2/_catalog")),
        Some("registry:catalog:*"),
        insufficient,
    );
    // Search can show any repository: it needs the catalog's scope too.
    let search =
        format!("{url}/v2/_zot/ext/search?query={{RepoListWithNewestImage{{Results{{Name}}}}}}");
    assert_challenged(pull.get(&search), Some("registry:catalog:*"), insufficient);
    let found: Value =
        serde_json::from_slice(&admin.get(&search).send().expect("search").bytes().unwrap())
            .expect("JSON");
    assert_eq!(
        found["data"]["RepoListWithNewestImage"]["Results"][0]["Name"],
        json!(REPO),
        "{found}"
    );
    // Pull-only cannot push; nothing is stored.
    let data = b"pushed with a pull token".to_vec();
    let digest = sha256_digest(&data);
    assert_challenged(
        pull.post(format!("{url}/v2/{REPO}/blobs/uploads/?digest={digest}"))
            .body(data.clone()),
        Some(format!("repository:{REPO}:pull,push").as_str()),
        insufficient,
    );
    assert_eq!(blob_status(&admin, url, REPO, &digest), 404);
    // pull,push cannot delete (GHSA-qg67); the manifest stays.
    let manifest_url = format!("{url}/v2/{REPO}/manifests/{}", image.digest);
    assert_challenged(
        push.delete(&manifest_url),
        Some(format!("repository:{REPO}:delete").as_str()),
        insufficient,
    );
    assert_eq!(
        pull.get(&manifest_url)
            .send()
            .expect("GET")
            .status()
            .as_u16(),
        200
    );
    // A mount needs pull on its source.
    assert_challenged(
        copy.post(format!(
            "{url}/v2/copy/blobs/uploads/?mount={layer}&from={REPO}"
        )),
        Some(format!("repository:copy:pull,push repository:{REPO}:pull").as_str()),
        insufficient,
    );
    assert_eq!(blob_status(&admin, url, "copy", &layer), 404);
    // What the tokens do grant works.
    assert_eq!(
        pull.get(format!("{url}/v2/{REPO}/blobs/{layer}"))
            .send()
            .expect("GET")
            .status()
            .as_u16(),
        200
    );
    let pushed =
        berth_tests::try_push_blob(&push, url, REPO, &data, true).expect("push with pull,push");
    assert_eq!(blob_status(&admin, url, REPO, &pushed), 200);
    let response = delete.delete(&manifest_url).send().expect("DELETE");
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(
        admin
            .get(&manifest_url)
            .send()
            .expect("GET")
            .status()
            .as_u16(),
        404
    );
}

#[test]
fn access_control_also_applies_to_the_token_user() {
    if !issuer_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let access = json!({"http": {"accessControl": {
        "repositories": {"**": {"policies": [
            {"users": ["alice"], "actions": ["read"]},
            {"users": ["root"], "actions": ["read", "create", "update", "delete"]},
        ]}},
        "adminPolicy": {"users": ["root"], "actions": ["read"]},
    }}});
    let (keys, berth) = setup(dir.path(), "rsa", access);
    let url = &berth.url;
    let admin = admin(&keys);
    seed(&admin, url);
    let everything = json!([repository(REPO, &["*"])]);
    let tokens = mint(&[
        spec(&keys, claims("alice", everything.clone())),
        spec(&keys, claims("", everything)),
    ]);
    let (alice, anonymous) = (with_token(&tokens[0]), with_token(&tokens[1]));
    assert_eq!(
        alice
            .get(format!("{url}/v2/{REPO}/manifests/v1"))
            .send()
            .expect("GET")
            .status()
            .as_u16(),
        200
    );
    // The token grants push; the policy does not grant alice create: 403, nothing stored.
    let data = b"denied by policy".to_vec();
    let digest = sha256_digest(&data);
    let response = alice
        .post(format!("{url}/v2/{REPO}/blobs/uploads/?digest={digest}"))
        .body(data)
        .send();
    let (status, _, body) = parts(response.expect("POST"));
    assert_eq!((status, code_of(&body).as_deref()), (403, Some("DENIED")));
    assert_eq!(blob_status(&admin, url, REPO, &digest), 404);
    // An anonymous token (empty sub) is anonymous to the policies: the challenge, to log in.
    assert_challenged(
        anonymous.get(format!("{url}/v2/{REPO}/manifests/v1")),
        Some(format!("repository:{REPO}:pull").as_str()),
        Some("insufficient_scope"),
    );
}

#[test]
fn an_unusable_cert_stops_serve() {
    if !issuer_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = make_keys(&dir.path().join("keys"));
    let private = keys["rsa"]["key"].as_str().expect("path");
    let config = dir.path().join("config.json");
    let write = |cert: &str| {
        let text = json!({
            "storage": {"rootDirectory": dir.path().join("data")},
            "http": {"address": "127.0.0.1", "port": "0",
                     "auth": {"bearer": {"realm": REALM, "service": SERVICE, "cert": cert}}},
        });
        std::fs::write(&config, text.to_string()).expect("config");
    };
    for cert in [
        private.to_owned(),
        dir.path().join("missing.pem").display().to_string(),
    ] {
        write(&cert);
        let (status, _, stderr) = serve_refused(&config, "an unusable cert");
        assert!(!status.success());
        assert!(
            stderr.contains("http.auth.bearer.cert") && stderr.contains(&cert),
            "{stderr}"
        );
        let key_text = std::fs::read_to_string(private).expect("key");
        let secret_line = key_text.lines().nth(1).expect("base64 line");
        assert!(!stderr.contains(secret_line), "the key reached the error");
    }
}
