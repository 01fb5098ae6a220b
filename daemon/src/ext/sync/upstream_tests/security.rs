//! Upstream auth and S14 tests: bearer realms on other hosts, Basic, token refresh,
//! redirects that change host or point at link-local addresses, argument checks.
use super::*;

#[test]
fn bearer_token_request_carries_no_credentials_of_another_host() {
    run(async {
        let accepted = Arc::new(Mutex::new(vec!["tok-1".to_owned()]));
        let (token_server, registry) = bearer_pair(accepted);
        let mut options = options(vec![registry.url()]);
        options
            .credentials
            .insert(&registry.addr.to_string(), "alice", "secret");
        let client = upstream(options);

        let manifest = client
            .manifest("library/alpine", "latest", false)
            .await
            .expect("manifest")
            .expect("found");
        assert_eq!(manifest.media_type, OCI_MANIFEST);
        assert_eq!(manifest.bytes, MANIFEST.as_bytes());
        assert_eq!(manifest.size, MANIFEST.len() as u64);
        assert_eq!(
            manifest.digest,
            Some(Digest::of(Algorithm::Sha256, MANIFEST.as_bytes()))
        );

        let token_requests = token_server.seen();
        assert_eq!(token_requests.len(), 1);
        assert_eq!(
            token_requests[0].authorization, None,
            "the registry's login never goes to the token host"
        );
        assert!(
            token_requests[0].target.contains("service=reg"),
            "{}",
            token_requests[0].target
        );
        assert!(token_requests[0]
            .target
            .contains("scope=repository%3Alibrary%2Falpine%3Apull"));
        let registry_requests = registry.seen();
        assert_eq!(registry_requests.len(), 2);
        assert_eq!(registry_requests[0].authorization, None, "anonymous first");
        assert_eq!(
            registry_requests[1].authorization.as_deref(),
            Some("Bearer tok-1")
        );
        assert!(registry_requests[0]
            .accept
            .as_deref()
            .is_some_and(|accept| accept.contains("manifest.list.v2+json")));

        // The cached token is sent up front; no new token request.
        client
            .manifest("library/alpine", "latest", true)
            .await
            .expect("head")
            .expect("found");
        assert_eq!(token_server.seen().len(), 1);
        assert_eq!(registry.seen().len(), 3);
        assert_eq!(registry.seen()[2].method, "HEAD");
        assert_eq!(
            registry.seen()[2].authorization.as_deref(),
            Some("Bearer tok-1")
        );
        assert_eq!(client.stats().requests_by_status().get(&401), Some(&1));
    });
}

#[test]
fn bearer_token_request_uses_the_realm_hosts_own_credentials() {
    run(async {
        let accepted = Arc::new(Mutex::new(vec!["tok-1".to_owned()]));
        let (token_server, registry) = bearer_pair(accepted);
        let mut options = options(vec![registry.url()]);
        options
            .credentials
            .insert(&registry.addr.to_string(), "alice", "secret");
        options
            .credentials
            .insert(&token_server.addr.to_string(), "bob", "pw");
        let client = upstream(options);
        client
            .manifest("library/alpine", "latest", false)
            .await
            .expect("manifest")
            .expect("found");
        let token_requests = token_server.seen();
        assert_eq!(token_requests.len(), 1);
        assert_eq!(token_requests[0].authorization, Some(basic("bob", "pw")));
        assert!(registry
            .seen()
            .iter()
            .all(|seen| seen.authorization.as_deref() != Some(&basic("alice", "secret"))));
    });
}

#[test]
fn rejected_cached_token_is_dropped_and_fetched_again_once() {
    run(async {
        let accepted = Arc::new(Mutex::new(vec!["tok-1".to_owned()]));
        let (token_server, registry) = bearer_pair(accepted.clone());
        let client = upstream(options(vec![registry.url()]));
        client
            .manifest("library/alpine", "latest", true)
            .await
            .expect("head")
            .expect("found");
        *accepted.lock().expect("accepted") = vec!["tok-2".to_owned()];
        client
            .manifest("library/alpine", "latest", true)
            .await
            .expect("head")
            .expect("found");
        assert_eq!(token_server.seen().len(), 2);
        let auths: Vec<_> = registry
            .seen()
            .into_iter()
            .map(|seen| seen.authorization)
            .collect();
        assert_eq!(
            auths[2..],
            [
                Some("Bearer tok-1".to_owned()),
                Some("Bearer tok-2".to_owned())
            ]
        );

        // A token the registry keeps refusing: one retry, then the 401 stands.
        accepted.lock().expect("accepted").clear();
        let error = client
            .manifest("library/alpine", "latest", true)
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(error, UpstreamError::Unauthorized { status: 401, .. }),
            "{error}"
        );
        assert_eq!(token_server.seen().len(), 3);
    });
}

#[test]
fn basic_auth_goes_only_where_configured() {
    run(async {
        let registry = serve(|seen, _| match seen.authorization.as_deref() {
            Some("Basic YWxpY2U6c2VjcmV0") => manifest_reply(),
            _ => respond(
                401,
                &[("www-authenticate", r#"Basic realm="registry, private""#)],
                "",
            ),
        });
        let anonymous = upstream(options(vec![registry.url()]));
        let error = anonymous
            .manifest("a/b", "v1", false)
            .await
            .err()
            .expect("no credentials");
        assert!(
            matches!(error, UpstreamError::Unauthorized { status: 401, .. }),
            "{error}"
        );
        assert_eq!(
            registry.seen().len(),
            1,
            "401 without credentials is not retried"
        );

        let mut options = options(vec![registry.url()]);
        options
            .credentials
            .insert(&registry.addr.to_string(), "alice", "secret");
        let client = upstream(options);
        client
            .manifest("a/b", "v1", false)
            .await
            .expect("manifest")
            .expect("found");
        client
            .manifest("a/b", "v2", false)
            .await
            .expect("manifest")
            .expect("found");
        let auths: Vec<_> = registry
            .seen()
            .into_iter()
            .skip(1)
            .map(|seen| seen.authorization)
            .collect();
        let alice = Some(basic("alice", "secret"));
        assert_eq!(
            auths,
            [None, alice.clone(), alice],
            "challenge once, then Basic up front"
        );
    });
}

#[test]
fn redirect_to_another_host_drops_authorization() {
    run(async {
        let cdn = serve(|_, _| respond(200, &[("content-length", "5")], "hello"));
        let location = format!("{}/cdn/blob?sig=1", cdn.url());
        let registry = serve(move |seen, _| match seen.authorization.as_deref() {
            Some("Basic YWxpY2U6c2VjcmV0") => respond(307, &[("location", &location)], ""),
            _ => respond(401, &[("www-authenticate", "Basic realm=r")], ""),
        });
        let mut options = options(vec![registry.url()]);
        options
            .credentials
            .insert(&registry.addr.to_string(), "alice", "secret");
        let client = upstream(options);
        let mut blob = client
            .blob("a", &Digest::of(Algorithm::Sha256, b"x"))
            .await
            .expect("blob")
            .expect("found");
        let mut body = Vec::new();
        while let Some(chunk) = blob.chunks.recv().await {
            body.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(body, b"hello");
        assert_eq!(
            registry.seen()[1].authorization,
            Some(basic("alice", "secret"))
        );
        let cdn_requests = cdn.seen();
        assert_eq!(cdn_requests.len(), 1);
        assert_eq!(cdn_requests[0].target, "/cdn/blob?sig=1");
        assert_eq!(
            cdn_requests[0].authorization, None,
            "credentials never follow a redirect to another host"
        );
    });
}

#[test]
fn redirects_and_realms_on_link_local_addresses_are_refused() {
    run(async {
        let registry = serve(|seen, _| {
            if seen.target.contains("/v6/") {
                respond(302, &[("location", "http://[fe80::1]/x")], "")
            } else if seen.target.contains("/realm/") {
                respond(
                    401,
                    &[(
                        "www-authenticate",
                        r#"Bearer realm="http://169.254.169.254/token""#,
                    )],
                    "",
                )
            } else {
                respond(
                    307,
                    &[("location", "http://169.254.169.254/latest/meta-data/")],
                    "",
                )
            }
        });
        let client = upstream(options(vec![registry.url()]));
        for repo in ["meta", "v6/x", "realm/x"] {
            let error = client
                .manifest(repo, "latest", false)
                .await
                .err()
                .expect("refused");
            assert!(
                matches!(error, UpstreamError::Refused(_)),
                "{repo}: {error}"
            );
        }
    });
}

#[test]
fn link_headers_parse() {
    let current = reqwest::Url::parse("http://h:5000/v2/r/tags/list?n=2").expect("url");
    let headers = |value: &str| {
        let mut map = reqwest::header::HeaderMap::new();
        map.insert("link", value.parse().expect("header"));
        map
    };
    let next = |value: &str| next_link(&headers(value), &current);
    assert_eq!(
        next(r#"</v2/r/tags/list?last=b>; rel="next""#)
            .expect("ok")
            .as_deref(),
        Some("/v2/r/tags/list?last=b")
    );
    assert_eq!(
        next(r#"<http://h:5000/v2/_catalog?last=x>; rel=next"#)
            .expect("ok")
            .as_deref(),
        Some("/v2/_catalog?last=x")
    );
    assert_eq!(
        next(r#"</v2/x>; rel="prev", </v2/y>; rel="next""#)
            .expect("ok")
            .as_deref(),
        Some("/v2/y")
    );
    assert_eq!(next(r#"</v2/x>; rel="prev""#).expect("ok"), None);
    assert!(
        next(r#"<http://h:5001/v2/x>; rel="next""#).is_err(),
        "another port"
    );
    assert!(
        next(r#"<https://h:5000/v2/x>; rel="next""#).is_err(),
        "another scheme"
    );
    assert!(next(r#"</admin>; rel="next""#).is_err(), "outside /v2/");
}

#[test]
fn link_local_addresses_are_recognised() {
    for (address, expected) in [
        ("169.254.169.254", true),
        ("169.254.0.1", true),
        ("169.253.255.255", false),
        ("127.0.0.1", false),
        ("fe80::1", true),
        ("febf::1", true),
        ("fec0::1", false),
        ("::ffff:169.254.169.254", true),
        ("::1", false),
    ] {
        assert_eq!(
            is_link_local(address.parse().expect("ip")),
            expected,
            "{address}"
        );
    }
    let refused = |url: &str| link_local_refusal(&reqwest::Url::parse(url).expect("url")).is_some();
    assert!(refused("http://169.254.169.254/latest"));
    assert!(refused("http://[fe80::1]:80/"));
    assert!(!refused("http://metadata.example/"));
    assert!(!refused("https://127.0.0.1:5000/"));
}

#[test]
fn repository_names_are_checked_before_they_reach_a_url() {
    for good in ["a", "library/alpine", "a.b/c_d/e-f"] {
        assert!(check_repo(good).is_ok(), "{good}");
    }
    for bad in ["", "A", "a//b", "../a", "a/..", "a?x", "a#b", "a b", "/a"] {
        assert!(check_repo(bad).is_err(), "{bad}");
    }
}

#[test]
fn options_are_validated() {
    let runtime = sync_runtime();
    let error = |options: UpstreamOptions| {
        Upstream::new(options, runtime.clone())
            .err()
            .expect("invalid")
    };
    assert!(error(options(vec![])).contains("at least one"));
    assert!(error(options(vec!["ftp://h".to_owned()])).contains("http"));
    let mut bad_rate = options(vec!["http://h".to_owned()]);
    bad_rate.req_per_sec = Some(0.0);
    assert!(error(bad_rate).contains("reqPerSec"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("client.cert"), "x").expect("write");
    let mut half_identity = options(vec!["https://h".to_owned()]);
    half_identity.cert_dir = Some(dir.path().to_owned());
    assert!(error(half_identity).contains("go together"));
}
