//! Tests of config loading: every file under `config/`, defaults, every validation rule, and
//! that all problems are reported in one pass.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config");

pub(super) fn ok(text: &str) -> (Config, Vec<Warning>) {
    match parse_str(text) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("expected {text} to load, got:\n{errors}"),
    }
}

pub(super) fn errors(text: &str) -> Vec<String> {
    match parse_str(text) {
        Ok((config, _)) => panic!("expected {text} to fail, got {config:?}"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

pub(super) fn warned(warnings: &[Warning], key_path: &str) -> bool {
    warnings.iter().any(|warning| warning.key_path == key_path)
}

/// A config with rootDirectory set and `http` replaced by `http_body`.
fn with_http(http_body: &str) -> String {
    format!(r#"{{"storage": {{"rootDirectory": "/data"}}, "http": {{{http_body}}}}}"#)
}

#[test]
fn every_file_under_config_dir_loads() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(CONFIG_DIR).expect("config/ exists at the repository root") {
        let path = entry.expect("readable config/ entry").path();
        let is_config = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| matches!(extension, "json" | "yaml" | "yml"));
        if !is_config {
            continue;
        }
        if let Err(errors) = load(Some(&path)) {
            panic!("{} does not load:\n{errors}", path.display());
        }
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    let expected_files = [
        "default.json",
        "example-zot-full.json",
        "example-zot.yaml",
        "minimal.json",
        "tuned.json",
    ];
    for expected in expected_files {
        assert!(checked.iter().any(|name| name == expected), "{checked:?}");
    }
}

#[test]
fn embedded_default() {
    let (config, warnings) = load(None).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.http.address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(config.http.port, 5000);
    assert_eq!(config.storage.root_directory, PathBuf::from("./berth-data"));
    assert!(config.storage.commit);
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Text);
    assert!(config.search.enabled, "a newcomer sees search");
    assert!(config.metrics.enabled, "and metrics");
    let from_file = load(Some(&Path::new(CONFIG_DIR).join("default.json"))).unwrap();
    assert_eq!(from_file.0, config);
}

#[test]
fn defaults_of_a_minimal_config() {
    let (config, warnings) = ok(r#"{"storage": {"rootDirectory": "/data"}}"#);
    assert!(warnings.is_empty(), "{warnings:?}");
    let expected = Config {
        dist_spec_version: "1.1.1".to_owned(),
        storage: StorageConfig {
            root_directory: PathBuf::from("/data"),
            commit: true,
            dedupe: true,
            gc: true,
            gc_delay: Duration::from_secs(3600),
            gc_interval: Duration::from_secs(3600),
            immutable_tags: Vec::new(),
            quotas: Vec::new(),
            gc_time_window: None,
            retention: None,
            backends: StorageBackends::default(),
        },
        http: HttpConfig {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            workers: None,
            read_header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            body_idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            external_url: None,
            realm: None,
            compat: Vec::new(),
            tls: None,
            ratelimit: None,
            allow_origin: Vec::new(),
            auth: None,
            bearer: None,
            apikey: false,
            mtls: super::MtlsConfig::default(),
            access: None,
        },
        log: LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
            output: None,
            audit: None,
        },
        extensions: ExtensionsConfig::default(),
        metrics: MetricsConfig::default(),
        lint: LintConfig::default(),
        scrub: ScrubConfig::default(),
        sync: None,
        search: SearchConfig::default(),
        ui: UiConfig::default(),
        trust: crate::config::TrustConfig::default(),
    };
    assert_eq!(config, expected);
}

#[test]
fn full_zot_example_is_accepted_with_warnings() {
    let (config, warnings) = load(Some(&Path::new(CONFIG_DIR).join("example-zot-full.json")))
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(config.http.address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(config.http.port, 5000);
    assert_eq!(config.http.body_idle_timeout, Duration::from_secs(30 * 60));
    assert_eq!(config.http.compat, vec!["docker2s2".to_owned()]);
    assert_eq!(config.http.realm.as_deref(), Some("zot"));
    assert_eq!(
        config.http.external_url.as_deref(),
        Some("https://registry.example.com")
    );
    assert_eq!(config.storage.gc_interval, Duration::from_secs(6 * 3600));
    assert_eq!(
        config.log.output,
        Some(PathBuf::from("/var/log/zot/zot.log"))
    );
    assert_eq!(
        config.log.audit,
        Some(PathBuf::from("/var/log/zot/audit.log"))
    );
    for name in ExtensionsConfig::NAMES {
        let expected = !matches!(name, "userprefs");
        assert_eq!(config.extensions.is_enabled(name), expected, "{name}");
        // Implemented extensions do not warn.
        assert_eq!(
            warned(&warnings, &format!("extensions.{name}")),
            expected
                && !matches!(
                    name,
                    "metrics"
                        | "lint"
                        | "scrub"
                        | "sync"
                        | "search"
                        | "mgmt"
                        | "userprefs"
                        | "ui"
                        | "trust"
                ),
            "{name}"
        );
    }
    let sync = config.extensions.sync.as_ref().unwrap();
    assert_eq!(sync.raw["registries"][1]["pollInterval"], "6h");
    assert_eq!(
        config.metrics,
        MetricsConfig {
            enabled: true,
            path: "/metrics".into(),
            namespace: "zot".into()
        }
    );
    // LDAP authenticates (so accessControl has users); API keys are on beside it.
    let ldap = config
        .http
        .auth
        .as_ref()
        .and_then(|auth| auth.ldap.as_ref());
    assert_eq!(
        ldap.map(|ldap| ldap.address.as_str()),
        Some("ldap.example.com")
    );
    assert!(config.http.apikey);
    for key_path in ["http.auth", "http.accessControl", "http.auth.ldap"] {
        assert!(
            warnings.iter().all(|w| w.key_path != key_path),
            "{key_path}: {warnings:?}"
        );
    }
    for key_path in [
        "http.writeTimeout",
        "http.readTimeout",
        "storage.subPaths",
        "storage.maxRepos",
        "storage.fastRestart",
        "scheduler",
        "extensions.search.cve",
    ] {
        let count = warnings.iter().filter(|w| w.key_path == key_path).count();
        assert_eq!(count, 1, "{key_path}: {warnings:?}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"{
        "distSpecVersion": 7,
        "storage": {"rootDirectory": "", "gc": "yes", "gcDelay": "1d", "gcInterval": "0s"},
        "http": {"address": "example.com", "port": "abc", "workers": 0,
                 "idleTimeout": 30, "drainTimeout": "-1s", "externalUrl": "ftp://x",
                 "compat": ["docker2s2", "oci9"], "colour": "blue"},
        "log": {"level": "loud", "format": "xml", "output": 3},
        "extensions": {"search": {"enable": "yes"}, "teleport": {}, "ui": []},
        "surprise": true
    }"#;
    let found = errors(text);
    let expected = [
        "distSpecVersion: expected a string, got 7",
        "storage.rootDirectory: must not be empty",
        "storage.gc: expected true or false, got \"yes\"",
        "storage.gcDelay: unknown unit \"d\"",
        "storage.gcInterval: must be greater than zero",
        "http.address: expected an IP address",
        "http.port: expected a port number from 0 to 65535, got \"abc\"",
        "http.workers: expected an integer from 1 to 256, got 0",
        "http.idleTimeout: expected a duration string",
        "http.drainTimeout: duration \"-1s\" must not be negative",
        "http.externalUrl: expected an absolute http:// or https:// URL",
        "http.compat[1]: unknown compatibility mode \"oci9\"",
        "http.colour: unknown key",
        "log.level: expected one of trace, debug, info, warn, error, got \"loud\"",
        "log.format: expected \"text\" or \"json\", got \"xml\"",
        "log.output: expected a string, got 3",
        "extensions.search.enable: expected true or false, got \"yes\"",
        "extensions.teleport: unknown key",
        "extensions.ui: expected an object, got a list",
        "surprise: unknown key",
    ];
    for prefix in expected {
        assert!(
            found.iter().any(|line| line.starts_with(prefix)),
            "missing {prefix:?} in:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), expected.len(), "{}", found.join("\n"));
    let display =
        ConfigErrors(parse_str(text).unwrap_err().0.into_iter().take(2).collect()).to_string();
    assert_eq!(display.lines().count(), 2, "{display}");
}

#[test]
fn example_files_warn_as_documented() {
    let warnings_of = |name: &str| {
        let (_, warnings) = load(Some(&Path::new(CONFIG_DIR).join(name))).unwrap();
        warnings.into_iter().map(|w| w.key_path).collect::<Vec<_>>()
    };
    assert!(warnings_of("example-zot.yaml").is_empty());
    assert!(warnings_of("minimal.json").is_empty());
    let (tuned, warnings) = load(Some(&Path::new(CONFIG_DIR).join("tuned.json"))).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(tuned.http.workers, Some(4));
    assert_eq!(tuned.log.format, LogFormat::Json);
    assert_eq!(tuned.http.body_idle_timeout, Duration::from_secs(120));
}

#[test]
fn storage_root_directory_is_required() {
    for text in [
        r#"{}"#,
        r#"{"storage": {}}"#,
        r#"{"storage": null}"#,
        r#"{"storage": {"rootDirectory": "  "}}"#,
    ] {
        let found = errors(text);
        assert_eq!(found.len(), 1, "{text}: {found:?}");
        assert!(found[0].starts_with("storage.rootDirectory: "), "{found:?}");
    }
}

#[test]
fn port_forms() {
    let table: &[(&str, u16)] = &[
        (r#""port": "8080""#, 8080),
        (r#""port": 8080"#, 8080),
        (r#""port": "0""#, 0),
        (r#""port": 0"#, 0),
        (r#""port": "65535""#, 65535),
        (r#""port": null"#, 8080),
    ];
    for (body, expected) in table {
        assert_eq!(ok(&with_http(body)).0.http.port, *expected, "{body}");
    }
    for body in [
        r#""port": "65536""#,
        r#""port": 65536"#,
        r#""port": -1"#,
        r#""port": "-1""#,
        r#""port": "+80""#,
        r#""port": " 80""#,
        r#""port": """#,
        r#""port": 80.5"#,
        r#""port": true"#,
    ] {
        let found = errors(&with_http(body));
        assert_eq!(found.len(), 1, "{body}: {found:?}");
        assert!(
            found[0].starts_with("http.port: expected a port number"),
            "{found:?}"
        );
    }
}

#[test]
fn address_forms() {
    let table: &[(&str, IpAddr, bool)] = &[
        ("127.0.0.1", IpAddr::V4(Ipv4Addr::LOCALHOST), false),
        ("0.0.0.0", IpAddr::V4(Ipv4Addr::UNSPECIFIED), false),
        ("::1", IpAddr::V6(Ipv6Addr::LOCALHOST), false),
        ("[::]", IpAddr::V6(Ipv6Addr::UNSPECIFIED), false),
        ("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST), true),
        ("LocalHost", IpAddr::V4(Ipv4Addr::LOCALHOST), true),
        ("", IpAddr::V4(Ipv4Addr::UNSPECIFIED), true),
    ];
    for (text, expected, warns) in table {
        let (config, warnings) = ok(&with_http(&format!(r#""address": "{text}""#)));
        assert_eq!(config.http.address, *expected, "{text}");
        assert_eq!(warned(&warnings, "http.address"), *warns, "{text}");
    }
    for text in ["registry.example.com", "127.0.0.1:5000", "1.2.3", "[::1"] {
        let found = errors(&with_http(&format!(r#""address": "{text}""#)));
        assert!(
            found[0].starts_with("http.address: expected an IP address"),
            "{found:?}"
        );
    }
}

#[test]
fn workers_range() {
    assert_eq!(ok(&with_http(r#""workers": 1"#)).0.http.workers, Some(1));
    assert_eq!(
        ok(&with_http(r#""workers": 256"#)).0.http.workers,
        Some(256)
    );
    for body in [r#""workers": 0"#, r#""workers": 257"#, r#""workers": "4""#] {
        assert!(
            errors(&with_http(body))[0].starts_with("http.workers: "),
            "{body}"
        );
    }
}

#[test]
fn timeouts_parse_and_must_be_positive() {
    let (config, _) = ok(&with_http(
        r#""readHeaderTimeout": "500ms", "idleTimeout": "2m", "bodyIdleTimeout": "1h30m",
           "drainTimeout": "1.5s""#,
    ));
    assert_eq!(config.http.read_header_timeout, Duration::from_millis(500));
    assert_eq!(config.http.idle_timeout, Duration::from_secs(120));
    assert_eq!(config.http.body_idle_timeout, Duration::from_secs(5400));
    assert_eq!(config.http.drain_timeout, Duration::from_millis(1500));
    for key in [
        "readHeaderTimeout",
        "idleTimeout",
        "bodyIdleTimeout",
        "drainTimeout",
        "readTimeout",
    ] {
        let found = errors(&with_http(&format!(r#""{key}": "0s""#)));
        assert_eq!(
            found,
            vec![format!("http.{key}: must be greater than zero")]
        );
    }
}

#[test]
fn read_timeout_maps_to_body_idle_timeout() {
    let (config, warnings) = ok(&with_http(r#""readTimeout": "45s""#));
    assert_eq!(config.http.body_idle_timeout, Duration::from_secs(45));
    assert!(warned(&warnings, "http.readTimeout"));
    let (config, warnings) = ok(&with_http(
        r#""readTimeout": "45s", "bodyIdleTimeout": "10s""#,
    ));
    assert_eq!(config.http.body_idle_timeout, Duration::from_secs(10));
    let warning = warnings
        .iter()
        .find(|w| w.key_path == "http.readTimeout")
        .unwrap();
    assert!(warning.message.contains("ignored"), "{warning}");
}

#[test]
fn keys_matching_ignoring_case_are_accepted_with_a_warning() {
    let text = r#"{"Storage": {"rootdirectory": "/data", "GCDELAY": "2h"},
                   "http": {"Port": 5001, "TLS": {}}, "log": {"Level": "debug"}}"#;
    let (config, warnings) = ok(text);
    assert_eq!(config.storage.root_directory, PathBuf::from("/data"));
    assert_eq!(config.storage.gc_delay, Duration::from_secs(7200));
    assert_eq!(config.http.port, 5001);
    assert_eq!(config.log.level, "debug");
    // Paths of parents are canonical; the last key is shown as written.
    for key_path in [
        "Storage",
        "storage.rootdirectory",
        "storage.GCDELAY",
        "http.Port",
        "log.Level",
    ] {
        let warning = warnings.iter().find(|w| w.key_path == key_path).unwrap();
        assert!(warning.message.contains("ignoring case"), "{warning}");
    }
    // The case-folded ignored key warns twice: once for the case, once for being ignored.
    assert!(warned(&warnings, "http.TLS"));
    assert!(warned(&warnings, "http.tls"));
}

#[test]
fn a_key_given_twice_is_an_error() {
    let found = errors(r#"{"storage": {"rootDirectory": "/a", "rootdirectory": "/b"}}"#);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("given twice"), "{found:?}");
    let found = errors(r#"{"storage": {"rootDirectory": "/a", "rootDirectory": "/b"}}"#);
    assert!(
        found[0].contains("given twice") && found[0].contains("line 1"),
        "{found:?}"
    );
}

#[test]
fn unimplemented_zot_keys_warn_once_each() {
    let text = r#"{"storage": {"rootDirectory": "/d",
                   "cacheDriver": {"name": "redis"}, "remoteCache": true},
                   "http": {"auth": {"failDelay": 1}, "allowOrigin": "*"},
                   "cluster": {"members": []}, "commit": "abc"}"#;
    let (_, warnings) = ok(text);
    let mut paths: Vec<&str> = warnings.iter().map(|w| w.key_path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "cluster",
            "commit",
            "http.allowOrigin",
            "http.auth",
            "storage.cacheDriver",
            "storage.remoteCache",
        ]
    );
    // zot's ways to run several nodes point to berth's.
    for key_path in ["cluster", "storage.cacheDriver", "storage.remoteCache"] {
        let warning = warnings.iter().find(|w| w.key_path == key_path).unwrap();
        assert!(
            warning.message.contains("storage.index.postgres")
                && warning.message.contains("storage.storageDriver"),
            "{warning}"
        );
    }
    let auth = warnings.iter().find(|w| w.key_path == "http.auth").unwrap();
    assert!(auth.message.contains("WITHOUT CREDENTIALS"), "{auth}");
}

#[test]
fn extension_enablement_follows_zot() {
    let text = r#"{"storage": {"rootDirectory": "/d"}, "extensions": {
        "search": {}, "scrub": {"enable": false}, "lint": {"mandatoryAnnotations": []},
        "mgmt": {"enable": true}, "sync": {"registries": []}, "trust": {"enable": null},
        "metrics": {"Enable": false}}}"#;
    let (config, warnings) = ok(text);
    let extensions = &config.extensions;
    assert!(extensions.is_enabled("search"));
    assert!(!extensions.is_enabled("scrub"));
    assert!(!extensions.is_enabled("lint"));
    assert!(extensions.is_enabled("mgmt"));
    assert!(!extensions.is_enabled("sync"));
    assert!(extensions.is_enabled("trust"));
    assert!(!extensions.is_enabled("metrics"));
    assert!(extensions.get("lint").is_some());
    assert!(extensions.get("ui").is_none() && !extensions.is_enabled("ui"));
    let mut paths: Vec<&str> = warnings.iter().map(|w| w.key_path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["extensions.metrics.Enable", "extensions.trust.enable"]
    );
    let (config, _) = ok(r#"{"storage": {"rootDirectory": "/d"},
                              "extensions": {"sync": {"registries": [{"urls": ["https://ghcr.io"]}]}}}"#);
    assert!(config.extensions.is_enabled("sync"));
}

#[test]
fn storage_flags_and_warnings() {
    let (config, warnings) = ok(r#"{"storage": {"rootDirectory": "/d", "commit": false,
        "dedupe": false, "gc": false, "gcDelay": "0", "gcInterval": "30m"}}"#);
    assert!(!config.storage.commit && !config.storage.dedupe && !config.storage.gc);
    assert_eq!(config.storage.gc_delay, Duration::ZERO);
    assert_eq!(config.storage.gc_interval, Duration::from_secs(1800));
    assert!(warned(&warnings, "storage.commit"));
    assert!(warned(&warnings, "storage.dedupe"));
}

#[test]
fn log_levels_and_paths() {
    let log = |body: &str| {
        let text = format!(r#"{{"storage": {{"rootDirectory": "/d"}}, "log": {{{body}}}}}"#);
        ok(&text)
    };
    assert_eq!(log(r#""level": "WARN""#).0.log.level, "warn");
    let (config, warnings) = log(r#""level": "fatal""#);
    assert_eq!(config.log.level, "error");
    assert!(warned(&warnings, "log.level"));
    assert_eq!(log(r#""format": "json""#).0.log.format, LogFormat::Json);
    assert_eq!(log(r#""output": """#).0.log.output, None);
}

#[test]
fn dist_spec_version_is_kept() {
    let (config, warnings) =
        ok(r#"{"distSpecVersion": "1.1.0", "storage": {"rootDirectory": "/d"}}"#);
    assert_eq!(config.dist_spec_version, "1.1.0");
    assert!(warnings.is_empty());
    let (_, warnings) = ok(r#"{"distSpecVersion": "1.0.1", "storage": {"rootDirectory": "/d"}}"#);
    assert!(warned(&warnings, "distSpecVersion"));
}

#[test]
fn whole_document_errors() {
    assert!(errors("")[0].starts_with("not valid JSON"));
    assert!(errors("{")[0].starts_with("not valid JSON"));
    assert!(errors("[]")[0].starts_with("the config must be an object"));
    assert!(errors(r#"{"storage": 1}"#)[0].starts_with("storage: expected an object, got 1"));
}

#[test]
fn non_identifier_keys_are_quoted_in_paths() {
    let found = errors(r#"{"storage": {"rootDirectory": "/d"}, "extensions": {"a/b": 1}}"#);
    assert_eq!(
        found,
        vec![
            r#"extensions["a/b"]: unknown key (known keys here: metrics, scrub, lint, sync, search, ui, mgmt, userprefs, trust, events)"#
        ]
    );
}

#[test]
fn yaml_is_read_like_json() {
    let yaml = "distSpecVersion: 1.1.1\nstorage:\n  rootDirectory: /data\n  gcDelay: 2h\n\
                http:\n  address: 0.0.0.0\n  port: \"5000\"\n  tls:\n    cert: /c\n    key: /k\n\
                log:\n  level: debug\nextensions:\n  search:\n    enable: true\n";
    let (config, warnings) = parse_yaml_str(yaml).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(config.storage.gc_delay, Duration::from_secs(7200));
    assert_eq!(config.http.port, 5000);
    assert_eq!(config.log.level, "debug");
    assert_eq!(config.http.tls.map(|tls| tls.key), Some("/k".into()));
    assert!(!warned(&warnings, "http.tls"));
    assert!(config.extensions.is_enabled("search"));
    let found = match parse_yaml_str("storage:\n  rootDirectory: /a\n  rootDirectory: /b\n") {
        Err(errors) => errors.to_string(),
        Ok(_) => panic!("duplicate YAML key accepted"),
    };
    assert!(found.starts_with("not valid YAML"), "{found}");
    let found = parse_yaml_str("http:\n  port: abc\n")
        .unwrap_err()
        .to_string();
    assert!(
        found.contains("http.port: expected a port number"),
        "{found}"
    );
    assert!(found.contains("storage.rootDirectory: required"), "{found}");
}

#[test]
fn load_reads_yaml_by_extension_and_names_the_file_on_syntax_errors() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("zot.yml");
    std::fs::write(&yaml, "storage:\n  rootDirectory: /data\n").unwrap();
    assert_eq!(load(Some(&yaml)).unwrap().0.http.port, 8080);
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"storage\": ").unwrap();
    let message = load(Some(&broken)).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: not valid JSON", broken.display())),
        "{message}"
    );
}
