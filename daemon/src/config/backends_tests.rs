//! Tests of `storage.storageDriver`, `storage.index.postgres` and `storage.redirectBlobURL`
//! (backends.rs): zot's S3 example, every rule with its key path, and that no secret reaches
//! `Debug`, a warning, an error or the mgmt document. Every load here uses a fixed
//! environment, so a `BERTH_POSTGRES_URL` of the machine running the tests changes nothing.

use std::collections::BTreeMap;

use super::*;

const PASSWORD: &str = "hunter2-pw";
const SECRET_KEY: &str = "wJalrXUtnFEMI-K7MDENG";

fn load_with(storage: &str, env: &[(&str, &str)]) -> Result<(Config, Vec<Warning>), Vec<String>> {
    let text = format!(r#"{{"storage": {{"rootDirectory": "/data", {storage}}}}}"#);
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    parse_str_with_env(&text, env)
        .map_err(|errors| errors.0.iter().map(ToString::to_string).collect())
}

fn ok(storage: &str) -> (StorageBackends, Vec<Warning>) {
    ok_with(storage, &[])
}

fn ok_with(storage: &str, env: &[(&str, &str)]) -> (StorageBackends, Vec<Warning>) {
    match load_with(storage, env) {
        Ok((config, warnings)) => (config.storage.backends, warnings),
        Err(errors) => panic!("expected {storage} to load, got:\n{}", errors.join("\n")),
    }
}

fn errors(storage: &str) -> Vec<String> {
    errors_with(storage, &[])
}

fn errors_with(storage: &str, env: &[(&str, &str)]) -> Vec<String> {
    match load_with(storage, env) {
        Ok((config, _)) => panic!("expected {storage} to fail, got {config:?}"),
        Err(errors) => errors,
    }
}

/// Every warning at `key_path`, joined with " | "; panics if there is none.
fn warning(warnings: &[Warning], key_path: &str) -> String {
    let found: Vec<&str> = warnings
        .iter()
        .filter(|warning| warning.key_path == key_path)
        .map(|warning| warning.message.as_str())
        .collect();
    assert!(!found.is_empty(), "no warning at {key_path}: {warnings:?}");
    found.join(" | ")
}

const ZOT_S3: &str = r#""storageDriver": {"name":"s3","rootdirectory":"/zot","region":"us-east-1","bucket":"zot","secure":true}"#;

#[test]
fn zot_s3_example_is_parsed() {
    let (backends, warnings) = ok(ZOT_S3);
    let expected = S3Driver {
        region: "us-east-1".to_owned(),
        bucket: "zot".to_owned(),
        region_endpoint: None,
        secure: true,
        skip_verify: false,
        credentials: None,
        root_directory: "zot".to_owned(),
        force_path_style: false,
    };
    assert_eq!(backends.s3, Some(expected));
    assert_eq!(backends.postgres, None);
    assert!(!backends.redirect_blob_url);
    assert!(backends.is_shared());
    assert_eq!(backends.blob_driver_name(), "s3");
    // Wired into the engine: no warning.
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn s3_defaults_follow_regionendpoint() {
    let (backends, _) = ok(r#""storageDriver": {"name": "s3", "region": "us-east-1",
        "bucket": "b", "regionendpoint": "http://127.0.0.1:8333/"}"#);
    let s3 = backends.s3.unwrap();
    assert_eq!(s3.region_endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert!(
        s3.force_path_style,
        "path style by default with an endpoint"
    );
    assert!(s3.secure && !s3.skip_verify);
    assert_eq!(s3.root_directory, "");
    let (backends, warnings) = ok(r#""storageDriver": {"name": "s3", "region": "r",
        "bucket": "b", "regionendpoint": "https://s3.example.com", "forcepathstyle": false,
        "secure": false, "skipverify": true}"#);
    let s3 = backends.s3.unwrap();
    assert!(!s3.force_path_style && !s3.secure && s3.skip_verify);
    assert!(warning(&warnings, "storage.storageDriver.secure").contains("scheme decides"));
    assert!(warning(&warnings, "storage.storageDriver.skipverify").contains("not verified"));
    for endpoint in [
        "ftp://s3.example.com",
        "s3.example.com",
        "http://",
        "http://a b",
    ] {
        let text = format!(
            r#""storageDriver": {{"name": "s3", "region": "r", "bucket": "b",
            "regionendpoint": "{endpoint}"}}"#
        );
        let found = errors(&text);
        assert_eq!(found.len(), 1, "{endpoint}: {found:?}");
        assert!(
            found[0].starts_with("storage.storageDriver.regionendpoint: expected an http"),
            "{found:?}"
        );
    }
}

#[test]
fn s3_required_keys_are_named() {
    let found = errors(r#""storageDriver": {"name": "s3", "region": "us-east-1"}"#);
    assert_eq!(found, ["storage.storageDriver.bucket: required"]);
    let found = errors(r#""storageDriver": {"name": "s3", "bucket": "b", "region": ""}"#);
    assert_eq!(found, ["storage.storageDriver.region: must not be empty"]);
    let found = errors(r#""storageDriver": {"region": "r", "bucket": "b"}"#);
    assert_eq!(found, [r#"storage.storageDriver.name: required: "s3""#]);
    let found = errors(r#""storageDriver": {"name": "s3", "region": "r", "bucket": "a/b"}"#);
    assert!(
        found[0].starts_with("storage.storageDriver.bucket:"),
        "{found:?}"
    );
    let found = errors(
        r#""storageDriver": {"name": "s3", "region": "r", "bucket": "b", "rootdirectory": "/a/../b"}"#,
    );
    assert!(
        found[0].starts_with("storage.storageDriver.rootdirectory:"),
        "{found:?}"
    );
}

#[test]
fn s3_credentials_are_both_or_neither_and_never_shown() {
    let found = errors(
        r#""storageDriver": {"name": "s3", "region": "r", "bucket": "b", "accesskey": "AKIA1"}"#,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("storage.storageDriver.secretkey: accesskey is set without"),
        "{found:?}"
    );
    let text = format!(
        r#""storageDriver": {{"name": "s3", "region": "r", "bucket": "b", "secretkey": "{SECRET_KEY}"}}"#
    );
    let found = errors(&text);
    assert!(
        found[0].starts_with("storage.storageDriver.accesskey: secretkey is set without"),
        "{found:?}"
    );
    assert!(!found[0].contains(SECRET_KEY), "{found:?}");
    // A secret of the wrong type is not quoted back either.
    let found = errors(
        r#""storageDriver": {"name": "s3", "region": "r", "bucket": "b", "accesskey": "A", "secretkey": 98765}"#,
    );
    assert_eq!(
        found,
        ["storage.storageDriver.secretkey: expected a string"]
    );
    // Empty strings are "not given" (Distribution's rule): the environment's keys are used.
    let (backends, _) = ok(
        r#""storageDriver": {"name": "s3", "region": "r", "bucket": "b", "accesskey": "", "secretkey": ""}"#,
    );
    assert_eq!(backends.s3.unwrap().credentials, None);
    let text = format!(
        r#""storageDriver": {{"name": "s3", "region": "r", "bucket": "b", "accesskey": "AKIA1", "secretkey": "{SECRET_KEY}"}}"#
    );
    let (config, warnings) = load_with(&text, &[]).unwrap();
    let credentials = config.storage.backends.s3.as_ref().unwrap();
    let credentials = credentials.credentials.as_ref().unwrap();
    assert_eq!(credentials.access_key, "AKIA1");
    assert_eq!(credentials.secret_key.expose(), SECRET_KEY);
    let shown = format!("{config:?} {config:#?} {warnings:?}");
    assert!(!shown.contains(SECRET_KEY), "{shown}");
    assert!(shown.contains("AKIA1") && shown.contains("***"));
}

#[test]
fn only_the_s3_driver_exists() {
    for name in ["gcs", "azure", "S3", "filesystem"] {
        let text = format!(
            r#""storageDriver": {{"name": "{name}", "bucket": "b", "credentials": "/k.json",
            "accountname": "a"}}"#
        );
        let found = errors(&text);
        assert_eq!(found.len(), 1, "only the name is reported: {found:?}");
        assert!(
            found[0].starts_with("storage.storageDriver.name: storage driver")
                && found[0].contains("only storage driver is \"s3\""),
            "{found:?}"
        );
    }
    let found = errors(r#""storageDriver": {"name": 3}"#);
    assert_eq!(
        found,
        [r#"storage.storageDriver.name: expected "s3", got 3"#]
    );
}

#[test]
fn distribution_keys_berth_does_not_use_warn_and_unknown_keys_are_errors() {
    let ignored = [
        "chunksize",
        "multipartcopychunksize",
        "multipartcopymaxconcurrency",
        "multipartcopythresholdsize",
        "storageclass",
        "encrypt",
        "keyid",
        "v4auth",
        "loglevel",
        "useragent",
        "usedualstack",
        "accelerate",
        "objectacl",
    ];
    let extra: Vec<String> = ignored
        .iter()
        .map(|key| format!(r#""{key}": "x""#))
        .collect();
    let text = format!(
        r#""storageDriver": {{"name": "s3", "region": "r", "bucket": "b", {}}}"#,
        extra.join(", ")
    );
    let (backends, warnings) = ok(&text);
    assert!(backends.s3.is_some());
    for key in ignored {
        let path = format!("storage.storageDriver.{key}");
        assert!(warning(&warnings, &path).contains("ignored"), "{path}");
    }
    assert_eq!(warnings.len(), ignored.len(), "{warnings:?}");
    let found =
        errors(r#""storageDriver": {"name": "s3", "region": "r", "bucket": "b", "buckit": "c"}"#);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("storage.storageDriver.buckit: unknown key (known keys here: name,"),
        "{found:?}"
    );
}

#[test]
fn redirect_blob_url_applies_to_s3_only() {
    let (backends, warnings) = ok(r#""redirectBlobURL": true"#);
    assert!(!backends.redirect_blob_url);
    assert!(warning(&warnings, "storage.redirectBlobURL").contains("only to S3 storage"));
    let (backends, warnings) = ok(r#""redirectBlobURL": false"#);
    assert!(!backends.redirect_blob_url);
    assert!(warnings.is_empty(), "{warnings:?}");
    let (backends, warnings) = ok(&format!(r#"{ZOT_S3}, "redirectBlobURL": true"#));
    assert!(backends.redirect_blob_url);
    assert!(warnings.is_empty(), "{warnings:?}");
    let found = errors(r#""redirectBlobURL": "yes""#);
    assert_eq!(
        found,
        [r#"storage.redirectBlobURL: expected true or false, got "yes""#]
    );
}

#[test]
fn postgres_url_inline_is_accepted_with_a_warning_and_redacted() {
    let text = format!(
        r#"{ZOT_S3}, "index": {{"postgres": {{"url": "postgres://berth:{PASSWORD}@db.example/registry"}}}}"#
    );
    let (config, warnings) = load_with(&text, &[]).unwrap();
    let postgres = config.storage.backends.postgres.as_ref().unwrap();
    assert_eq!(postgres.url_source, UrlSource::Config);
    assert_eq!(postgres.schema, "berth");
    assert_eq!(postgres.pool_size, 16);
    assert!(postgres.url.has_password());
    assert_eq!(
        postgres.url.expose(),
        format!("postgres://berth:{PASSWORD}@db.example/registry")
    );
    assert_eq!(postgres.url.config().get_dbname(), Some("registry"));
    let redacted = "postgres://berth:***@db.example:5432/registry";
    assert_eq!(format!("{:?}", postgres.url), redacted);
    assert_eq!(postgres.url.to_string(), redacted);
    assert!(warning(&warnings, "storage.index.postgres.url").contains("urlFile"));
    assert!(
        warnings
            .iter()
            .all(|found| found.key_path != "storage.index.postgres"),
        "{warnings:?}"
    );
    let shown = format!("{config:?} {config:#?} {warnings:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    // Without a password: no warning; several hosts are all shown.
    let (backends, warnings) = ok(
        r#""index": {"postgres": {"url": "postgresql://berth@[::1]:6432,db2/registry?sslmode=disable"}}"#,
    );
    let url = backends.postgres.unwrap().url;
    assert_eq!(
        format!("{url:?}"),
        "postgres://berth@[::1]:6432,db2:5432/registry"
    );
    assert!(!warnings
        .iter()
        .any(|w| w.key_path == "storage.index.postgres.url"));
}

#[test]
fn postgres_url_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("postgres-url");
    let url = format!("postgres://berth:{PASSWORD}@127.0.0.1:5432/berth");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let text = format!(
        r#"{ZOT_S3}, "index": {{"postgres": {{"urlFile": {:?}, "schema": "reg_1", "poolSize": 4}}}}"#,
        file.display().to_string()
    );
    let (backends, warnings) = ok(&text);
    let postgres = backends.postgres.unwrap();
    assert_eq!(postgres.url.expose(), url);
    assert_eq!(postgres.url_source, UrlSource::File(file.clone()));
    assert_eq!((postgres.schema.as_str(), postgres.pool_size), ("reg_1", 4));
    assert!(!warnings
        .iter()
        .any(|w| w.key_path == "storage.index.postgres.url"));
    // A bad URL in the file: the error names the file, never the password.
    std::fs::write(&file, format!("postgres://berth:{PASSWORD}@host:port/db\n")).unwrap();
    let found = errors(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("storage.index.postgres.urlFile: the URL in"),
        "{found:?}"
    );
    assert!(!found[0].contains(PASSWORD), "{found:?}");
    let missing = dir.path().join("absent");
    let found = errors(&format!(
        r#""index": {{"postgres": {{"urlFile": {:?}}}}}"#,
        missing.display().to_string()
    ));
    assert!(
        found[0].starts_with("storage.index.postgres.urlFile: cannot read"),
        "{found:?}"
    );
}

#[test]
fn postgres_url_from_the_environment_wins() {
    let env_url = format!("postgres://node:{PASSWORD}@10.0.0.5/berth");
    let env = [(POSTGRES_URL_ENV, env_url.as_str())];
    let (backends, warnings) = ok_with(r#""index": {"postgres": {}}"#, &env);
    let postgres = backends.postgres.unwrap();
    assert_eq!(postgres.url_source, UrlSource::Environment);
    assert_eq!(postgres.url.expose(), env_url);
    // The section's url is overridden (and then neither read nor checked), with a warning.
    let (backends, warnings_over) = ok_with(
        r#""index": {"postgres": {"url": "postgres://other@elsewhere/db", "urlFile": "/nonexistent"}}"#,
        &env,
    );
    assert_eq!(
        backends.postgres.unwrap().url_source,
        UrlSource::Environment
    );
    for key in ["url", "urlFile"] {
        let path = format!("storage.index.postgres.{key}");
        assert!(
            warning(&warnings_over, &path).contains(POSTGRES_URL_ENV),
            "{path}"
        );
    }
    // Only a set variable counts: the section alone enables PostgreSQL.
    let (backends, _) = ok_with("\"gc\": true", &env);
    assert_eq!(backends.postgres, None);
    let bad = format!("postgres://node:{PASSWORD}@10.0.0.5:99999/berth");
    let found = errors_with(r#""index": {"postgres": {}}"#, &[(POSTGRES_URL_ENV, &bad)]);
    assert!(
        found[0].starts_with("storage.index.postgres: BERTH_POSTGRES_URL:"),
        "{found:?}"
    );
    let shown = format!("{found:?} {warnings:?} {warnings_over:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
}

#[test]
fn postgres_url_rules() {
    let found = errors(r#""index": {"postgres": {}}"#);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("storage.index.postgres: needs the connection URL"),
        "{found:?}"
    );
    let found = errors(r#""index": {"postgres": {"url": "postgres://a@b/c", "urlFile": "/f"}}"#);
    assert_eq!(
        found,
        ["storage.index.postgres: give url or urlFile, not both"]
    );
    for (url, expected) in [
        (
            "mysql://a@b/c",
            "expected a postgres:// or postgresql:// URL",
        ),
        (
            "host=db user=berth",
            "expected a postgres:// or postgresql:// URL",
        ),
        ("postgres://b/c", "the URL names no user"),
        ("postgres://a@/c", "the URL names no host"),
        (
            "postgres://user:PW@host:notaport/db",
            "not a valid PostgreSQL URL",
        ),
        ("postgres://user:PW@[::1/db", "not a valid PostgreSQL URL"),
        (
            "postgres://user:PW@host/db?colour=blue",
            "not a valid PostgreSQL URL",
        ),
    ] {
        let url = url.replace("PW", PASSWORD);
        let found = errors(&format!(r#""index": {{"postgres": {{"url": "{url}"}}}}"#));
        assert_eq!(found.len(), 1, "{url}: {found:?}");
        assert!(
            found[0].starts_with(&format!("storage.index.postgres.url: {expected}")),
            "{url}: {found:?}"
        );
        assert!(!found[0].contains(PASSWORD), "{found:?}");
    }
    let found = errors(r#""index": {"postgres": {"url": "postgres://a@b/c"}, "rocksdb": {}}"#);
    assert!(
        found[0].starts_with("storage.index.rocksdb: unknown key"),
        "{found:?}"
    );
}

#[test]
fn postgres_schema_and_pool_size_are_checked() {
    let url = r#""url": "postgres://a@b/c""#;
    for good in ["berth", "_x", "a1_b2", &"s".repeat(63)] {
        let (backends, _) = ok(&format!(
            r#""index": {{"postgres": {{{url}, "schema": "{good}"}}}}"#
        ));
        assert_eq!(backends.postgres.unwrap().schema, good);
    }
    for bad in [
        "",
        "Berth",
        "1abc",
        "pg_catalog",
        "a-b",
        "a.b",
        "a b",
        "é",
        &"s".repeat(64),
    ] {
        let found = errors(&format!(
            r#""index": {{"postgres": {{{url}, "schema": "{bad}"}}}}"#
        ));
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        assert!(
            found[0].starts_with("storage.index.postgres.schema: expected a plain PostgreSQL name"),
            "{bad}: {found:?}"
        );
    }
    for (size, expected) in [
        ("1", Some(1)),
        ("256", Some(256)),
        ("0", None),
        ("257", None),
    ] {
        let text = format!(r#""index": {{"postgres": {{{url}, "poolSize": {size}}}}}"#);
        match expected {
            Some(expected) => assert_eq!(ok(&text).0.postgres.unwrap().pool_size, expected),
            None => assert_eq!(
                errors(&text),
                [format!(
                    "storage.index.postgres.poolSize: expected an integer from 1 to 256, got {size}"
                )]
            ),
        }
    }
}

#[test]
fn combinations_and_sub_paths() {
    let (backends, warnings) = ok(r#""gc": true"#);
    assert_eq!(backends, StorageBackends::default());
    assert!(!backends.is_shared());
    assert_eq!(backends.blob_driver_name(), "local");
    assert!(warnings.is_empty(), "{warnings:?}");
    // PostgreSQL alone: one node's disk holds the blobs.
    let postgres = r#""index": {"postgres": {"url": "postgres://a@b/c"}}"#;
    let (backends, warnings) = ok(postgres);
    assert!(backends.postgres.is_some() && backends.s3.is_none());
    assert!(warning(&warnings, "storage.index.postgres").contains("shared blob storage"));
    // S3 and PostgreSQL: several nodes; no such warning.
    let (backends, warnings) = ok(&format!("{ZOT_S3}, {postgres}"));
    assert!(backends.s3.is_some() && backends.postgres.is_some());
    assert!(!warnings
        .iter()
        .any(|w| w.message.contains("shared blob storage")));
    // subPaths: a warning on the embedded backend, an error on the shared ones.
    let sub_paths = r#""subPaths": {"/a": {"rootDirectory": "/a"}}"#;
    let (_, warnings) = ok(sub_paths);
    assert!(warning(&warnings, "storage.subPaths").contains("ignored"));
    for shared in [ZOT_S3, postgres] {
        let found = errors(&format!("{shared}, {sub_paths}"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("storage.subPaths: not supported with the shared backends"),
            "{found:?}"
        );
    }
}

#[test]
fn mgmt_shows_no_backend_secret() {
    let text = format!(
        r#"{{"storage": {{"rootDirectory": "/data", "storageDriver": {{"name": "s3", "region": "r",
        "bucket": "b", "accesskey": "AKIA1", "secretkey": "{SECRET_KEY}"}},
        "index": {{"postgres": {{"url": "postgres://a:{PASSWORD}@b/c"}}}}}},
        "extensions": {{"search": {{}}}}}}"#
    );
    let (config, _) = parse_str_with_env(&text, BTreeMap::new()).unwrap();
    let document = crate::ext::mgmt::document(&config).to_string();
    for secret in [SECRET_KEY, PASSWORD, "AKIA1", "postgres://"] {
        assert!(!document.contains(secret), "{secret} in {document}");
    }
}
