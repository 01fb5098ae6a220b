//! `storage.index.postgres` (berth's, issue 20, storage-engine/SHARED.md D6): the PostgreSQL
//! index's URL, schema and pool size, and the URL wrapper that keeps the password out of
//! `Debug`, logs and messages.
//!
//! Rules:
//! - The URL comes from exactly one place: the environment variable [`POSTGRES_URL_ENV`] when
//!   set and not empty (it overrides the section's `url`/`urlFile`, which are then neither read
//!   nor checked, with a warning each), else `url` or `urlFile` (not both, not neither). The
//!   variable alone does not turn PostgreSQL on.
//! - It must parse with `tokio_postgres::Config` as a `postgres://` URL naming a user and a
//!   host. No error, warning or `Debug` output contains its password; a password written in
//!   the config file itself warns (use `urlFile` or the environment).
//! - The environment is read through [`Environment`], so tests give a fixed one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use super::walk::{describe, Ctx, Section};

/// The environment variable that carries the PostgreSQL URL (preferred: no secret in the file).
pub const POSTGRES_URL_ENV: &str = "BERTH_POSTGRES_URL";
/// `storage.index.postgres.schema` when absent.
pub const DEFAULT_POSTGRES_SCHEMA: &str = "berth";
/// `storage.index.postgres.poolSize` when absent.
pub const DEFAULT_POSTGRES_POOL_SIZE: usize = 16;
/// Upper bound of `poolSize`: connections per node.
pub const MAX_POSTGRES_POOL_SIZE: u64 = 256;
/// PostgreSQL's `NAMEDATALEN - 1`: longer identifiers are truncated by the server.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// `storage.index.postgres` (berth): the index in PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresIndex {
    /// The connection URL (redacted in `Debug` and `Display`).
    pub url: PostgresUrl,
    /// Where the URL came from.
    pub url_source: UrlSource,
    /// `schema` (default `berth`): the schema holding berth's tables; lower-case letters,
    /// digits and `_`, not starting with a digit or `pg_`, at most 63 bytes.
    pub schema: String,
    /// `poolSize` (default 16, 1..=256): connections this node keeps open.
    pub pool_size: usize,
}

/// Where [`PostgresIndex::url`] was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlSource {
    /// `url`, written in the config file.
    Config,
    /// `urlFile`: the file's content, trailing whitespace trimmed.
    File(PathBuf),
    /// The environment variable [`POSTGRES_URL_ENV`].
    Environment,
}

/// A PostgreSQL URL (`postgres://` or `postgresql://`) that `tokio_postgres::Config` parses
/// and that names a user and a host. `Debug` and `Display` print it with the password
/// replaced: `postgres://user:***@host:5432/db`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    text: String,
    redacted: String,
    has_password: bool,
}

impl PostgresUrl {
    /// Parses `text`. The error never contains the password.
    pub fn parse(text: &str) -> Result<PostgresUrl, String> {
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err("expected a postgres:// or postgresql:// URL".to_owned());
        }
        let config: tokio_postgres::Config = text.parse().map_err(|error| {
            let message = scrub(&format!("{error}"), text);
            format!("not a valid PostgreSQL URL: {message}")
        })?;
        if config.get_user().is_none_or(str::is_empty) {
            return Err("the URL names no user (postgres://USER[:PASSWORD]@HOST/DB)".to_owned());
        }
        if config.get_hosts().is_empty() {
            return Err("the URL names no host (postgres://USER[:PASSWORD]@HOST/DB)".to_owned());
        }
        Ok(PostgresUrl {
            redacted: redact(&config),
            has_password: config.get_password().is_some(),
            text: text.to_owned(),
        })
    }

    /// The URL with its password: only for the connection pool, never for a log line.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The parsed connection settings (its own `Debug` hides the password too).
    pub fn config(&self) -> tokio_postgres::Config {
        self.text
            .parse()
            .expect("a PostgresUrl was parsed by tokio_postgres when it was made")
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        self.has_password
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.redacted)
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.redacted)
    }
}

/// `postgres://user[:***]@host:port[,host:port...][/db]` from parsed settings (query
/// parameters are left out: they can carry a password too).
fn redact(config: &tokio_postgres::Config) -> String {
    let mut out = "postgres://".to_owned();
    if let Some(user) = config.get_user() {
        out.push_str(user);
        if config.get_password().is_some() {
            out.push_str(":***");
        }
        out.push('@');
    }
    let ports = config.get_ports();
    for (index, host) in config.get_hosts().iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        match host {
            tokio_postgres::config::Host::Tcp(name) if name.contains(':') => {
                out.push_str(&format!("[{name}]"));
            }
            tokio_postgres::config::Host::Tcp(name) => out.push_str(name),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => {
                out.push_str(&format!("(socket {})", path.display()));
            }
        }
        if let Some(port) = ports.get(index).or(ports.first()) {
            out.push_str(&format!(":{port}"));
        }
    }
    if let Some(dbname) = config.get_dbname() {
        out.push('/');
        out.push_str(dbname);
    }
    out
}

/// `message` with anything that looks like the password of `url` replaced (tokio-postgres'
/// errors name options, not values; this holds even if that changes).
fn scrub(message: &str, url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let password = rest
        .split_once('@')
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    match password {
        Some(password) if message.contains(password) => message.replace(password, "***"),
        _ => message.to_owned(),
    }
}

/// `storage.index`: `Some(None)` when there is no PostgreSQL section, `None` when invalid.
pub(crate) fn index(ctx: &mut Ctx, storage: &Section<'_>) -> Option<Option<PostgresIndex>> {
    let Some(value) = storage.raw("index") else {
        return Some(None);
    };
    let section = Section::read(ctx, &storage.path_of("index"), value, &["postgres"], &[])?;
    match section.raw("postgres") {
        Some(value) => postgres(ctx, &section.path_of("postgres"), value).map(Some),
        None => Some(None),
    }
}

fn postgres(ctx: &mut Ctx, path: &str, value: &Value) -> Option<PostgresIndex> {
    let keys = &["url", "urlFile", "schema", "poolSize"];
    let section = Section::read(ctx, path, value, keys, &[])?;
    let url = postgres_url(ctx, &section);
    let schema = schema(ctx, &section);
    let pool_size = section.integer(ctx, "poolSize", 1, MAX_POSTGRES_POOL_SIZE);
    if section.has("poolSize") && pool_size.is_none() {
        return None;
    }
    let (url, url_source) = url?;
    Some(PostgresIndex {
        url,
        url_source,
        schema: schema?,
        pool_size: pool_size.map_or(DEFAULT_POSTGRES_POOL_SIZE, |size| {
            usize::try_from(size).expect("poolSize is at most 256")
        }),
    })
}

/// The URL from the environment, `url` or `urlFile`, parsed.
fn postgres_url(ctx: &mut Ctx, section: &Section<'_>) -> Option<(PostgresUrl, UrlSource)> {
    let url = section.string(ctx, "url");
    let url_file = section.string(ctx, "urlFile");
    let from_env = ctx.env.var(POSTGRES_URL_ENV).filter(|url| !url.is_empty());
    if let Some(text) = from_env {
        for key in ["url", "urlFile"] {
            if section.has(key) {
                let message = format!("overridden by the environment variable {POSTGRES_URL_ENV}");
                ctx.warn(&section.path_of(key), message);
            }
        }
        return match PostgresUrl::parse(&text) {
            Ok(url) => Some((url, UrlSource::Environment)),
            Err(message) => {
                ctx.error(&section.path, format!("{POSTGRES_URL_ENV}: {message}"));
                None
            }
        };
    }
    match (url, url_file) {
        (Some(_), Some(_)) => {
            let message = "give url or urlFile, not both";
            ctx.error(&section.path, message);
            None
        }
        (Some(text), None) => match PostgresUrl::parse(&text) {
            Ok(url) => {
                if url.has_password() {
                    let message = format!(
                        "the URL holds a password: move it to a file named by urlFile, or to \
                         the environment variable {POSTGRES_URL_ENV}, to keep it out of the \
                         config file"
                    );
                    ctx.warn(&section.path_of("url"), message);
                }
                Some((url, UrlSource::Config))
            }
            Err(message) => {
                ctx.error(&section.path_of("url"), message);
                None
            }
        },
        (None, Some(file)) => {
            let path = PathBuf::from(&file);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    let message = format!("cannot read {}: {error}", path.display());
                    ctx.error(&section.path_of("urlFile"), message);
                    return None;
                }
            };
            match PostgresUrl::parse(text.trim_end()) {
                Ok(url) => Some((url, UrlSource::File(path))),
                Err(message) => {
                    let message = format!("the URL in {}: {message}", path.display());
                    ctx.error(&section.path_of("urlFile"), message);
                    None
                }
            }
        }
        (None, None) => {
            if !section.has("url") && !section.has("urlFile") {
                let message = format!(
                    "needs the connection URL: urlFile (a file holding it), the environment \
                     variable {POSTGRES_URL_ENV}, or url"
                );
                ctx.error(&section.path, message);
            }
            None
        }
    }
}

fn schema(ctx: &mut Ctx, section: &Section<'_>) -> Option<String> {
    let Some(schema) = section.string(ctx, "schema") else {
        return (!section.has("schema")).then(|| DEFAULT_POSTGRES_SCHEMA.to_owned());
    };
    let plain = !schema.is_empty()
        && schema.len() <= MAX_IDENTIFIER_BYTES
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && !schema.starts_with("pg_");
    if !plain {
        let message = format!(
            "expected a plain PostgreSQL name: lower-case letters, digits and _, not starting \
             with a digit or pg_, at most {MAX_IDENTIFIER_BYTES} bytes; got {}",
            describe(&Value::String(schema))
        );
        ctx.error(&section.path_of("schema"), message);
        return None;
    }
    Some(schema)
}

/// The process environment, or a fixed map (tests).
#[derive(Default)]
pub(crate) enum Environment {
    #[default]
    Process,
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(BTreeMap<String, String>),
}

impl Environment {
    pub fn var(&self, name: &str) -> Option<String> {
        match self {
            Environment::Process => std::env::var(name).ok(),
            Environment::Fixed(map) => map.get(name).cloned(),
        }
    }
}
