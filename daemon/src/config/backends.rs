//! The shared backends of issue 20 (storage-engine/SHARED.md D6): `storage.storageDriver`
//! (zot's S3 keys, as Distribution's `s3` driver reads them), `storage.index.postgres` (berth's)
//! and `storage.redirectBlobURL` (zot's), walked into one [`StorageBackends`].
//!
//! Rules:
//! - Only `name: "s3"` is a driver; gcs and azure are errors. Distribution's S3 keys that berth
//!   does not use warn (one each, naming the key); any other key is an error, as everywhere in
//!   the config.
//! - Secrets (the S3 secret key, the PostgreSQL URL's password) never reach `Debug`, a warning
//!   or an error: they are held in [`Secret`] and `PostgresUrl` (postgres.rs), whose `Debug`
//!   redacts.
//! - Combinations: none (files + RocksDB), S3 + PostgreSQL (several nodes), S3 alone (one node,
//!   RocksDB index), PostgreSQL alone (one node's disk for blobs: warns). `storage.subPaths`
//!   with either shared backend is an error.
//! - The engine uses all three (serve.rs `engine_options`; the blob GET's redirect in
//!   api/blobs.rs).

use std::fmt;

use serde_json::Value;

use super::postgres::{index, PostgresIndex};
use super::walk::{describe, Ctx, Ignored, Section};

const SUB_PATHS_IGNORED: &str = "per-prefix stores are not implemented yet in this build; \
     ignored: every repository is stored under rootDirectory";

/// Keys of `storage.storageDriver` that berth reads (lower case, as Distribution's driver).
const S3_KEYS: &[&str] = &[
    "name",
    "region",
    "bucket",
    "regionendpoint",
    "secure",
    "skipverify",
    "accesskey",
    "secretkey",
    "rootdirectory",
    "forcepathstyle",
];

const MULTIPART: &str = "berth sizes its S3 multipart uploads itself; ignored";
const ENCRYPTION: &str = "berth asks for no server-side encryption: the bucket's default \
     encryption applies; ignored";
const ENDPOINT: &str = "berth reaches S3 at the region's endpoint or regionendpoint only; ignored";

/// Distribution's S3 keys berth knowingly does not use.
const S3_IGNORED: &[Ignored] = &[
    ("chunksize", MULTIPART),
    ("multipartcopychunksize", MULTIPART),
    ("multipartcopymaxconcurrency", MULTIPART),
    ("multipartcopythresholdsize", MULTIPART),
    (
        "storageclass",
        "objects get the bucket's default storage class; ignored",
    ),
    ("encrypt", ENCRYPTION),
    ("keyid", ENCRYPTION),
    (
        "v4auth",
        "berth always signs with AWS Signature Version 4; ignored",
    ),
    (
        "loglevel",
        "S3 calls are logged at berth's log.level; ignored",
    ),
    ("useragent", "berth sends its own User-Agent; ignored"),
    ("usedualstack", ENDPOINT),
    ("accelerate", ENDPOINT),
    ("objectacl", "objects get the bucket's default ACL; ignored"),
    (
        "sessiontoken",
        "temporary credentials in the config are not supported; ignored",
    ),
];

/// Where blobs and the index live: `storage.storageDriver`, `storage.index` and
/// `storage.redirectBlobURL`. The default (all `None`, false) is today's embedded backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageBackends {
    /// `storage.storageDriver` with `name: "s3"`: blobs in an S3 bucket. `None`: blob files
    /// under `rootDirectory`.
    pub s3: Option<S3Driver>,
    /// `storage.index.postgres`: the index in PostgreSQL. `None`: RocksDB under
    /// `rootDirectory`.
    pub postgres: Option<PostgresIndex>,
    /// `storage.redirectBlobURL` (zot, default false): a blob GET without a Range header is
    /// answered with 307 to a presigned URL of the object. Always false without `s3`.
    pub redirect_blob_url: bool,
}

impl StorageBackends {
    /// Whether any part of the store lives outside this node (S3 blobs or PostgreSQL index).
    pub fn is_shared(&self) -> bool {
        self.s3.is_some() || self.postgres.is_some()
    }

    /// The blob store's name as shown to operators: `s3` or `local` (never a setting's value).
    pub fn blob_driver_name(&self) -> &'static str {
        match self.s3 {
            Some(_) => "s3",
            None => "local",
        }
    }
}

/// `storage.storageDriver` with `name: "s3"`: zot's keys, which zot hands to Distribution's
/// `s3` driver (lower case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Driver {
    /// `region` (required), e.g. `us-east-1`; any name with `regionendpoint` (MinIO, SeaweedFS).
    pub region: String,
    /// `bucket` (required).
    pub bucket: String,
    /// `regionendpoint`: `http://` or `https://` URL of an S3-compatible server (no trailing
    /// slash). `None`: AWS's endpoint of `region`.
    pub region_endpoint: Option<String>,
    /// `secure` (default true): HTTPS to AWS's endpoint. With `regionendpoint`, its scheme
    /// decides.
    pub secure: bool,
    /// `skipverify` (default false): do not verify the endpoint's TLS certificate.
    pub skip_verify: bool,
    /// `accesskey` and `secretkey` (both or neither). `None`: the engine takes the
    /// environment's `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub credentials: Option<S3Credentials>,
    /// `rootdirectory` (default `""`): key prefix inside the bucket, without leading or
    /// trailing `/` (Distribution strips the leading one too): `"/zot"` stores under `zot/`.
    pub root_directory: String,
    /// `forcepathstyle` (default: true with `regionendpoint`, else false): path-style
    /// requests (`endpoint/bucket/key`) instead of virtual-hosted ones (`bucket.endpoint/key`).
    pub force_path_style: bool,
}

/// Static S3 credentials from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Credentials {
    /// `accesskey`: the access key id (not secret; shown in `Debug`).
    pub access_key: String,
    /// `secretkey`.
    pub secret_key: Secret,
}

/// A secret string: `Debug` and `Display` print `***`; [`Secret::expose`] gives it to the one
/// place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(text)
    }

    /// The secret itself: only for the client that sends it, never for a log line.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

/// Walks `storageDriver`, `index`, `redirectBlobURL` and `subPaths` of the storage section.
/// `None` when one of them is invalid (the errors are in `ctx`).
pub(crate) fn backends(ctx: &mut Ctx, storage: &Section<'_>) -> Option<StorageBackends> {
    let s3 = match storage.raw("storageDriver") {
        Some(value) => s3(ctx, &storage.path_of("storageDriver"), value).map(Some),
        None => Some(None),
    };
    let postgres = index(ctx, storage);
    let redirect_blob_url = storage.boolean(ctx, "redirectBlobURL");
    let has_s3 = match &s3 {
        Some(s3) => s3.is_some(),
        None => true,
    };
    if redirect_blob_url == Some(true) && !has_s3 {
        let message = "applies only to S3 storage (storage.storageDriver), as in zot; ignored";
        ctx.warn(&storage.path_of("redirectBlobURL"), message);
    }
    if let (Some(None), Some(Some(_))) = (&s3, &postgres) {
        let message = "blobs stay on this node's disk under rootDirectory: several nodes need \
                       shared blob storage too (storage.storageDriver)";
        ctx.warn(&format!("{}.index.postgres", storage.path), message);
    }
    if storage.has("subPaths") {
        let shared = has_s3 || !matches!(postgres, Some(None));
        if shared {
            let message = "not supported with the shared backends (storage.storageDriver, \
                           storage.index.postgres): every repository is stored in the one \
                           bucket and index";
            ctx.error(&storage.path_of("subPaths"), message);
            return None;
        }
        ctx.warn(&storage.path_of("subPaths"), SUB_PATHS_IGNORED);
    }
    if storage.has("redirectBlobURL") && redirect_blob_url.is_none() {
        return None;
    }
    Some(StorageBackends {
        redirect_blob_url: redirect_blob_url.unwrap_or(false) && has_s3,
        s3: s3?,
        postgres: postgres?,
    })
}

/// `storage.storageDriver`: `None` when invalid.
fn s3(ctx: &mut Ctx, path: &str, value: &Value) -> Option<S3Driver> {
    // The name first: another driver's keys are not S3's, so only the name is reported.
    let name = match value {
        Value::Object(map) => map
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("name"))
            .map(|(_, name)| name),
        _ => None,
    };
    match name {
        Some(Value::String(name)) if name == "s3" => {}
        Some(Value::String(name)) => {
            let message = format!(
                "storage driver {name:?} is not supported: berth's only storage driver is \"s3\" \
                 (S3 and S3-compatible servers); without storageDriver, blobs are files under \
                 rootDirectory"
            );
            ctx.error(&format!("{path}.name"), message);
            return None;
        }
        Some(other) if !other.is_null() => {
            let message = format!("expected \"s3\", got {}", describe(other));
            ctx.error(&format!("{path}.name"), message);
            return None;
        }
        _ if value.is_object() => {
            ctx.error(&format!("{path}.name"), "required: \"s3\"");
            return None;
        }
        _ => {}
    }
    let section = Section::read(ctx, path, value, S3_KEYS, S3_IGNORED)?;
    let region = required(ctx, &section, "region");
    let bucket = required(ctx, &section, "bucket");
    if let Some(bucket) = &bucket {
        if bucket.contains(['/', ' ']) {
            let message = format!("{bucket:?} is not a bucket name (no '/' or spaces)");
            ctx.error(&section.path_of("bucket"), message);
        }
    }
    let region_endpoint = region_endpoint(ctx, &section);
    let secure = section.boolean(ctx, "secure");
    if let (Some(secure), Some(Some(endpoint))) = (secure, &region_endpoint) {
        if secure != endpoint.starts_with("https://") {
            let message =
                format!("{secure} has no effect: regionendpoint's scheme decides ({endpoint:?})");
            ctx.warn(&section.path_of("secure"), message);
        }
    }
    let skip_verify = section.boolean(ctx, "skipverify");
    if skip_verify == Some(true) {
        let message = "the S3 endpoint's TLS certificate is not verified: anyone on the path \
                       can read and change blobs";
        ctx.warn(&section.path_of("skipverify"), message);
    }
    let credentials = credentials(ctx, &section);
    let root_directory = root_directory(ctx, &section);
    let force_path_style = section.boolean(ctx, "forcepathstyle");
    let parsed = |key: &str, ok: bool| !section.has(key) || ok;
    if !(parsed("secure", secure.is_some())
        && parsed("skipverify", skip_verify.is_some())
        && parsed("forcepathstyle", force_path_style.is_some()))
    {
        return None;
    }
    let region_endpoint = region_endpoint?;
    let bucket = bucket.filter(|bucket| !bucket.contains(['/', ' ']));
    Some(S3Driver {
        region: region?,
        bucket: bucket?,
        force_path_style: force_path_style.unwrap_or(region_endpoint.is_some()),
        region_endpoint,
        secure: secure.unwrap_or(true),
        skip_verify: skip_verify.unwrap_or(false),
        credentials: credentials?,
        root_directory: root_directory?,
    })
}

/// A non-empty string at `key`; absent or empty is an error naming the key.
fn required(ctx: &mut Ctx, section: &Section<'_>, key: &str) -> Option<String> {
    match section.string(ctx, key) {
        Some(text) if !text.trim().is_empty() => Some(text),
        Some(_) => {
            ctx.error(&section.path_of(key), "must not be empty");
            None
        }
        None => {
            if !section.has(key) {
                ctx.error(&section.path_of(key), "required");
            }
            None
        }
    }
}

fn region_endpoint(ctx: &mut Ctx, section: &Section<'_>) -> Option<Option<String>> {
    let key = "regionendpoint";
    let Some(url) = section.string(ctx, key) else {
        return (!section.has(key)).then_some(None);
    };
    if url.is_empty() {
        return Some(None);
    }
    if !super::is_http_url(&url) || url.contains(['?', '#']) {
        let message = format!(
            "expected an http:// or https:// URL such as \"https://s3.example.com\" or \
             \"http://127.0.0.1:8333\", got {url:?}"
        );
        ctx.error(&section.path_of(key), message);
        return None;
    }
    Some(Some(url.trim_end_matches('/').to_owned()))
}

/// `accesskey` and `secretkey`: both (non-empty) or neither.
fn credentials(ctx: &mut Ctx, section: &Section<'_>) -> Option<Option<S3Credentials>> {
    let access_key = section.string(ctx, "accesskey");
    // Not through `Section::string`: its error would quote the value.
    let secret_key = match section.raw("secretkey") {
        Some(Value::String(secret)) => Some(secret.clone()),
        Some(_) => {
            ctx.error(&section.path_of("secretkey"), "expected a string");
            return None;
        }
        None => None,
    };
    if section.has("accesskey") && access_key.is_none() {
        return None;
    }
    let access_key = access_key.filter(|key| !key.is_empty());
    let secret_key = secret_key.filter(|key| !key.is_empty());
    match (access_key, secret_key) {
        (Some(access_key), Some(secret_key)) => Some(Some(S3Credentials {
            access_key,
            secret_key: Secret::new(secret_key),
        })),
        (None, None) => Some(None),
        (Some(_), None) => {
            let message = "accesskey is set without secretkey: give both, or neither to use \
                           the environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";
            ctx.error(&section.path_of("secretkey"), message);
            None
        }
        (None, Some(_)) => {
            let message = "secretkey is set without accesskey: give both, or neither to use \
                           the environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";
            ctx.error(&section.path_of("accesskey"), message);
            None
        }
    }
}

/// `rootdirectory`: a key prefix; `/` at either end is dropped, `.`/`..`/empty parts refused.
fn root_directory(ctx: &mut Ctx, section: &Section<'_>) -> Option<String> {
    let key = "rootdirectory";
    let Some(text) = section.string(ctx, key) else {
        return (!section.has(key)).then(String::new);
    };
    let prefix = text.trim_matches('/');
    let bad_part = prefix
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    if !prefix.is_empty() && (bad_part || prefix.contains(char::is_control)) {
        let message = format!(
            "expected a key prefix such as \"/zot\" or \"registry/prod\" (no empty, \".\" or \
             \"..\" parts), got {text:?}"
        );
        ctx.error(&section.path_of(key), message);
        return None;
    }
    Some(prefix.to_owned())
}
