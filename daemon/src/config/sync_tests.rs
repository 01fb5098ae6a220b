//! Tests of `extensions.sync`: a full section typed, defaults, enablement, warnings, and one
//! error with its key path for each bad input.

use std::path::PathBuf;
use std::time::Duration;

use super::tests::{errors, ok, warned};
use super::*;

/// A config whose `extensions.sync` is `sync_body`.
fn with_sync(sync_body: &str) -> String {
    format!(r#"{{"storage": {{"rootDirectory": "/d"}}, "extensions": {{"sync": {sync_body}}}}}"#)
}

/// A config with one registry whose keys are `registry_body` (plus on-demand `urls` unless
/// given).
fn with_registry(registry_body: &str) -> String {
    let urls = match registry_body.contains("\"urls\"") {
        true => String::new(),
        false => r#""urls": ["https://ghcr.io"], "onDemand": true, "#.to_owned(),
    };
    with_sync(&format!(r#"{{"registries": [{{{urls}{registry_body}}}]}}"#))
}

fn the_registry(registry_body: &str) -> (RegistryConfig, Vec<Warning>) {
    let (config, warnings) = ok(&with_registry(registry_body));
    let sync = config.sync.expect("sync is enabled");
    assert_eq!(sync.registries.len(), 1);
    (sync.registries.into_iter().next().unwrap(), warnings)
}

fn assert_error(text: &str, key_path: &str, message_part: &str) {
    let found = errors(text);
    assert_eq!(found.len(), 1, "{text}: {found:#?}");
    let error = &found[0];
    assert!(
        error.starts_with(&format!("{key_path}: ")),
        "{text}: expected an error at {key_path}, got {error}"
    );
    assert!(
        error.contains(message_part),
        "{text}: expected {message_part:?} in {error}"
    );
}

const REGISTRY_0: &str = "extensions.sync.registries[0]";

#[test]
fn a_full_sync_section_is_typed() {
    let credentials = tempfile::NamedTempFile::new().unwrap();
    let cert_dir = tempfile::tempdir().unwrap();
    let text = with_sync(&format!(
        r#"{{"enable": true, "credentialsFile": {credentials:?}, "registries": [
            {{"urls": ["https://registry-1.docker.io/", "http://10.0.0.1:5000"],
              "onDemand": true, "pollInterval": "6h", "tlsVerify": false, "certDir": {cert_dir:?},
              "maxRetries": 3, "retryDelay": "2s", "maxRetryDelay": "30s", "onlySigned": false,
              "preserveDigest": true, "syncTimeout": "30m", "manifestCheckInterval": "10m",
              "reqConcurrent": 32, "reqPerSec": 12.5,
              "content": [
                {{"prefix": "/library/**", "destination": "/mirror/docker.io",
                  "stripPrefix": true,
                  "tags": {{"regex": "^3\\.", "excludeRegex": "-rc", "semver": true}}}},
                {{"prefix": "**"}}
              ]}},
            {{"urls": ["https://[::1]:8443"], "pollInterval": "1h",
              "content": [{{"prefix": "project-zot/*", "tags": {{}}}}]}}
        ]}}"#,
        credentials = credentials.path().to_str().unwrap(),
        cert_dir = cert_dir.path().to_str().unwrap(),
    ));
    let (config, warnings) = ok(&text);
    assert!(warnings.is_empty(), "{warnings:?}");
    let expected = SyncConfig {
        enabled: true,
        credentials_file: Some(credentials.path().to_owned()),
        registries: vec![
            RegistryConfig {
                urls: vec![
                    "https://registry-1.docker.io".into(),
                    "http://10.0.0.1:5000".into(),
                ],
                on_demand: true,
                poll_interval: Some(Duration::from_secs(6 * 3600)),
                content: vec![
                    ContentConfig {
                        prefix: "/library/**".into(),
                        tags: Some(TagFilter {
                            regex: Some("^3\\.".into()),
                            exclude_regex: Some("-rc".into()),
                            semver: true,
                        }),
                        destination: Some("/mirror/docker.io".into()),
                        strip_prefix: true,
                    },
                    ContentConfig {
                        prefix: "**".into(),
                        tags: None,
                        destination: None,
                        strip_prefix: false,
                    },
                ],
                tls_verify: false,
                cert_dir: Some(cert_dir.path().to_owned()),
                max_retries: 3,
                retry_delay: Duration::from_secs(2),
                max_retry_delay: Duration::from_secs(30),
                only_signed: false,
                preserve_digest: true,
                sync_timeout: Duration::from_secs(30 * 60),
                manifest_check_interval: Duration::from_secs(10 * 60),
                req_concurrent: 32,
                req_per_sec: Some(12.5),
            },
            RegistryConfig {
                urls: vec!["https://[::1]:8443".into()],
                on_demand: false,
                poll_interval: Some(Duration::from_secs(3600)),
                content: vec![ContentConfig {
                    prefix: "project-zot/*".into(),
                    tags: Some(TagFilter::default()),
                    destination: None,
                    strip_prefix: false,
                }],
                tls_verify: true,
                cert_dir: None,
                max_retries: 0,
                retry_delay: DEFAULT_RETRY_DELAY,
                max_retry_delay: DEFAULT_RETRY_DELAY,
                only_signed: false,
                preserve_digest: false,
                sync_timeout: DEFAULT_SYNC_TIMEOUT,
                manifest_check_interval: DEFAULT_MANIFEST_CHECK_INTERVAL,
                req_concurrent: DEFAULT_REQ_CONCURRENT,
                req_per_sec: None,
            },
        ],
    };
    assert_eq!(config.sync, Some(expected));
    assert!(config.extensions.is_enabled("sync"));
}

#[test]
fn defaults_and_zot_zero_values() {
    let (registry, _) = the_registry(r#""syncTimeout": "0", "pollInterval": "0""#);
    assert_eq!(registry.sync_timeout, Duration::from_secs(3 * 3600));
    assert_eq!(registry.poll_interval, None);
    assert_eq!(registry.manifest_check_interval, Duration::from_secs(300));
    assert_eq!(registry.req_concurrent, 3);
    assert_eq!(registry.retry_delay, Duration::from_secs(1));
    assert_eq!(registry.max_retry_delay, Duration::from_secs(1));
    assert!(registry.tls_verify && !registry.only_signed && !registry.preserve_digest);
    assert!(registry.content.is_empty());
    let (registry, _) = the_registry(r#""manifestCheckInterval": "0s", "retryDelay": "3s""#);
    assert_eq!(registry.manifest_check_interval, Duration::ZERO);
    assert_eq!(registry.max_retry_delay, Duration::from_secs(3));
    // An empty credentialsFile or certDir is none (zot's examples write "").
    let (config, _) = ok(&with_sync(
        r#"{"credentialsFile": "", "registries": [{"urls": ["http://a"], "onDemand": true,
            "certDir": ""}]}"#,
    ));
    let sync = config.sync.unwrap();
    assert_eq!(sync.credentials_file, None);
    assert_eq!(sync.registries[0].cert_dir, None);
}

#[test]
fn enablement_follows_zot() {
    for body in [
        r#"{}"#,
        r#"{"registries": []}"#,
        r#"{"enable": false, "registries": [{"urls": ["https://ghcr.io"], "onDemand": true}]}"#,
    ] {
        let (config, warnings) = ok(&with_sync(body));
        assert_eq!(config.sync, None, "{body}");
        assert!(warnings.is_empty(), "{body}: {warnings:?}");
    }
    // A disabled section is still checked, but its files are not looked at.
    assert_error(
        &with_sync(r#"{"enable": false, "registries": [{"urls": ["ftp://x"]}]}"#),
        "extensions.sync.registries[0].urls[0]",
        "expected http://host[:port]",
    );
    let (config, _) = ok(&with_sync(
        r#"{"enable": false, "credentialsFile": "/nonexistent/creds.json"}"#,
    ));
    assert_eq!(config.sync, None);
    let (config, _) = ok(&with_sync(r#"{"enable": true}"#));
    assert_eq!(config.sync.map(|sync| sync.registries.len()), Some(0));
}

#[test]
fn urls_are_checked() {
    let path = format!("{REGISTRY_0}.urls");
    assert_error(&with_registry(r#""urls": []"#), &path, "at least one URL");
    let no_urls = with_sync(r#"{"registries": [{"onDemand": true}]}"#);
    assert_error(&no_urls, &path, "required");
    assert_error(
        &with_registry(r#""urls": "https://ghcr.io""#),
        &path,
        "list of strings",
    );
    for (url, message) in [
        ("ghcr.io", "expected http://host[:port]"),
        ("ftp://ghcr.io", "expected http://host[:port]"),
        ("https://", "expected http://host[:port]"),
        ("https://ghcr.io/v2/", "path, query or fragment"),
        ("https://ghcr.io?x=1", "path, query or fragment"),
        ("https://user:pass@ghcr.io", "credentialsFile"),
        ("https://ghcr.io:0", "expected http://host[:port]"),
        ("https://ghcr.io:65536", "expected http://host[:port]"),
        ("https://ghcr.io:", "expected http://host[:port]"),
        ("https://gh_cr.io", "expected http://host[:port]"),
        ("https://-ghcr.io", "expected http://host[:port]"),
        ("https://[::1", "expected http://host[:port]"),
        ("https://[zz]:80", "expected http://host[:port]"),
    ] {
        let text = with_registry(&format!(r#""urls": ["https://ok.example", "{url}"]"#));
        assert_error(&text, &format!("{path}[1]"), message);
    }
    for (url, kept) in [
        ("HTTPS://ghcr.io/", "https://ghcr.io"),
        ("http://localhost:5000", "http://localhost:5000"),
        ("https://[2001:db8::1]", "https://[2001:db8::1]"),
    ] {
        let (registry, _) = the_registry(&format!(r#""urls": ["{url}"], "onDemand": true"#));
        assert_eq!(registry.urls, [kept]);
    }
}

#[test]
fn each_bad_value_is_one_error_at_its_path() {
    let table: &[(&str, &str, &str)] = &[
        (r#""retryDelay": "5 minutes""#, "retryDelay", "unit"),
        (r#""pollInterval": 60"#, "pollInterval", "duration string"),
        (r#""syncTimeout": "-1s""#, "syncTimeout", "negative"),
        (
            r#""maxRetries": 3"#,
            "retryDelay",
            "required when maxRetries",
        ),
        (r#""maxRetries": -1"#, "maxRetries", "integer from 0"),
        (
            r#""retryDelay": "10s", "maxRetryDelay": "1s""#,
            "maxRetryDelay",
            "shorter",
        ),
        (
            r#""reqConcurrent": 0"#,
            "reqConcurrent",
            "integer from 1 to 1024",
        ),
        (r#""reqPerSec": 0"#, "reqPerSec", "above 0"),
        (r#""reqPerSec": -2.5"#, "reqPerSec", "above 0"),
        (r#""reqPerSec": "10""#, "reqPerSec", "above 0"),
        (r#""tlsVerify": "no""#, "tlsVerify", "true or false"),
        (
            r#""certDir": "/nonexistent/certs.d""#,
            "certDir",
            "not a directory",
        ),
        (r#""content": {}"#, "content", "expected a list"),
        (r#""content": [{}]"#, "content[0].prefix", "required"),
        (
            r#""content": [{"prefix": "/"}]"#,
            "content[0].prefix",
            "must not be empty",
        ),
        (
            r#""content": [{"prefix": "a[b"}]"#,
            "content[0].prefix",
            "bad glob",
        ),
        (
            r#""content": [{"prefix": "**"}, {"prefix": "x", "destination": "Bad Name"}]"#,
            "content[1].destination",
            "not a repository name",
        ),
        (
            r#""content": [{"prefix": "a/b", "stripPrefix": true}]"#,
            "content[0].stripPrefix",
            "needs a destination",
        ),
        (
            r#""content": [{"prefix": "**", "tags": {"regex": "(v"}}]"#,
            "content[0].tags.regex",
            "bad regular expression",
        ),
        (
            r#""content": [{"prefix": "**", "tags": {"regex": ""}}]"#,
            "content[0].tags.regex",
            "must not be empty",
        ),
        (
            r#""content": [{"prefix": "**", "tags": {"excludeRegex": "[z-a]"}}]"#,
            "content[0].tags.excludeRegex",
            "bad regular expression",
        ),
        (
            r#""content": [{"prefix": "**", "tags": {"semver": "yes"}}]"#,
            "content[0].tags.semver",
            "true or false",
        ),
        (
            r#""content": [{"prefix": "**", "tags": {"latest": true}}]"#,
            "content[0].tags.latest",
            "unknown key",
        ),
        (r#""urlz": []"#, "urlz", "unknown key"),
    ];
    for (body, key, message) in table {
        assert_error(
            &with_registry(body),
            &format!("{REGISTRY_0}.{key}"),
            message,
        );
    }
    assert_error(
        &with_sync(r#"{"enable": true, "credentialsFile": "/nonexistent/creds.json"}"#),
        "extensions.sync.credentialsFile",
        "cannot read credentials file /nonexistent/creds.json",
    );
    let dir = tempfile::tempdir().unwrap();
    assert_error(
        &with_sync(&format!(
            r#"{{"enable": true, "credentialsFile": {:?}}}"#,
            dir.path().to_str().unwrap()
        )),
        "extensions.sync.credentialsFile",
        "is not a file",
    );
    assert_error(
        &with_sync(r#"{"registries": {}}"#),
        "extensions.sync.registries",
        "a list",
    );
}

#[test]
fn every_problem_of_a_section_is_reported() {
    let found = errors(&with_sync(
        r#"{"registries": [{"urls": ["x"], "reqConcurrent": 0},
                           {"urls": [], "content": [{"prefix": "["}]}]}"#,
    ));
    let paths: Vec<&str> = found
        .iter()
        .map(|error| error.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "extensions.sync.registries[0].urls[0]",
            "extensions.sync.registries[0].reqConcurrent",
            "extensions.sync.registries[1].urls",
            "extensions.sync.registries[1].content[0].prefix",
        ]
    );
}

#[test]
fn unimplemented_zot_keys_warn() {
    let text = with_sync(
        r#"{"downloadDir": "/tmp/zot", "registries": [{"urls": ["https://ghcr.io"],
            "onDemand": true, "onlySigned": true, "syncLegacyCosignTags": false,
            "disableHTTP2": true, "maxIdleConnsPerHost": 8, "credentialHelper": "ecr",
            "oauth2CredentialHelper": {"tokenURL": "https://idp"},
            "content": [{"prefix": "**", "platforms": ["linux/amd64"]}]}]}"#,
    );
    let (config, warnings) = ok(&text);
    assert!(config.sync.unwrap().registries[0].only_signed);
    let mut paths: Vec<&str> = warnings.iter().map(|w| w.key_path.as_str()).collect();
    paths.sort_unstable();
    let registry = |key: &str| format!("{REGISTRY_0}.{key}");
    let mut expected = vec![
        "extensions.sync.downloadDir".to_owned(),
        registry("onlySigned"),
        registry("syncLegacyCosignTags"),
        registry("disableHTTP2"),
        registry("maxIdleConnsPerHost"),
        registry("credentialHelper"),
        registry("oauth2CredentialHelper"),
        registry("content[0].platforms"),
    ];
    expected.sort_unstable();
    assert_eq!(paths, expected);
    let only_signed = warnings
        .iter()
        .find(|w| w.key_path.ends_with("onlySigned"))
        .unwrap();
    assert!(
        only_signed.message.contains("extensions.trust"),
        "{only_signed}"
    );
    assert!(!warnings.iter().any(|w| w.key_path == "extensions.sync"));
}

#[test]
fn registries_that_do_nothing_warn() {
    let (_, warnings) = the_registry(r#""urls": ["https://ghcr.io"], "pollInterval": "1h""#);
    assert!(
        warned(&warnings, &format!("{REGISTRY_0}.pollInterval")),
        "{warnings:?}"
    );
    let (_, warnings) = the_registry(r#""urls": ["https://ghcr.io"]"#);
    assert!(warned(&warnings, REGISTRY_0), "{warnings:?}");
    let (registry, warnings) = the_registry(
        r#""urls": ["https://ghcr.io"], "pollInterval": "1h", "content": [{"prefix": "a/**"}]"#,
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(registry.poll_interval, Some(Duration::from_secs(3600)));
}

#[test]
fn the_zot_example_config_has_typed_sync() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/example-zot-full.json");
    let (config, warnings) = load(Some(&path)).unwrap_or_else(|errors| panic!("{errors}"));
    let sync = config.sync.expect("the example enables sync");
    assert_eq!(sync.registries.len(), 2);
    let docker = &sync.registries[0];
    assert!(docker.on_demand);
    assert_eq!(docker.max_retries, 3);
    assert_eq!(docker.max_retry_delay, Duration::from_secs(30));
    assert_eq!(docker.req_concurrent, 32);
    let ghcr = &sync.registries[1];
    assert_eq!(ghcr.poll_interval, Some(Duration::from_secs(6 * 3600)));
    assert!(ghcr.content[0].tags.as_ref().unwrap().semver);
    assert!(warned(
        &warnings,
        "extensions.sync.registries[0].disableHTTP2"
    ));
}
