//! `http.auth.ldap`, typed: zot's keys for logging users in against a directory.
//!
//! Rules:
//! - `address` and `baseDN` are required; `userAttribute` defaults to `uid`. The transport is
//!   LDAPS unless `startTLS` (plain then StartTLS) or `insecure` (plain, passwords in clear
//!   text: warned) is set; `port` defaults to 636 for LDAPS and 389 otherwise.
//! - The service account: `bindDN` and `bindPassword` inline (zot's older form) or in the JSON
//!   file `credentialsFile` (`{"bindDN": ..., "bindPassword": ...}`), read when the daemon
//!   starts (`serve` refuses to start on an unusable file; the config alone stays portable,
//!   as with `http.tls`); neither means an anonymous search. The password never appears in an error, a
//!   log line or `Debug` output.
//! - `userFilter` (an LDAP filter, e.g. `(objectClass=person)`) is ANDed with the user's
//!   `(userAttribute=NAME)`; it must be a parenthesised filter. `userGroupAttribute` (e.g.
//!   `memberOf`) lists the user's groups. `subtreeSearch` (default false, as zot) searches
//!   below `baseDN` at any depth instead of its direct children.
//! - `skipVerify` turns off certificate verification (warned); `cacert` names a PEM file of
//!   CA certificates to trust for the directory's certificate instead of the system's.

use std::fmt;
use std::path::PathBuf;

use super::walk::{Ctx, Section};

/// Largest credentials file read.
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;

/// How berth reaches the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LdapTransport {
    /// `ldaps://`: TLS from the first byte (the default).
    Ldaps,
    /// `ldap://` then the StartTLS extended operation (`startTLS: true`).
    StartTls,
    /// `ldap://` in clear text (`insecure: true`).
    Plain,
}

/// `http.auth.ldap`.
#[derive(Clone, PartialEq, Eq)]
pub struct LdapConfig {
    pub address: String,
    pub port: u16,
    pub transport: LdapTransport,
    /// `skipVerify`: the directory's certificate is not verified.
    pub skip_verify: bool,
    /// `cacert`: CA certificates (PEM) the directory's certificate must chain to.
    pub cacert: Option<PathBuf>,
    pub base_dn: String,
    pub user_attribute: String,
    pub user_filter: Option<String>,
    pub user_group_attribute: Option<String>,
    pub subtree_search: bool,
    /// The service account inline (`None`: anonymous search, unless `credentials_file`).
    pub bind_dn: Option<String>,
    pub bind_password: Option<String>,
    /// `credentialsFile`: the service account's JSON file, which wins over the inline pair.
    pub credentials_file: Option<PathBuf>,
}

impl fmt::Debug for LdapConfig {
    /// Leaves the bind password out.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("LdapConfig")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("skip_verify", &self.skip_verify)
            .field("base_dn", &self.base_dn)
            .field("user_attribute", &self.user_attribute)
            .field("user_filter", &self.user_filter)
            .field("user_group_attribute", &self.user_group_attribute)
            .field("subtree_search", &self.subtree_search)
            .field("bind_dn", &self.bind_dn)
            .field("credentials_file", &self.credentials_file)
            .finish_non_exhaustive()
    }
}

/// `http.auth.ldap` within `http.auth`: `Some(None)` when absent, `None` when invalid.
pub(crate) fn ldap(ctx: &mut Ctx, auth: &Section<'_>) -> Option<Option<LdapConfig>> {
    let Some(value) = auth.raw("ldap") else {
        return Some(None);
    };
    let section = Section::read(
        ctx,
        &auth.path_of("ldap"),
        value,
        &[
            "address",
            "port",
            "insecure",
            "startTLS",
            "skipVerify",
            "cacert",
            "baseDN",
            "userAttribute",
            "userFilter",
            "userGroupAttribute",
            "subtreeSearch",
            "bindDN",
            "bindPassword",
            "credentialsFile",
        ],
        &[],
    )?;
    let ok = std::cell::Cell::new(true);
    let text = |ctx: &mut Ctx, key: &str, required: bool| -> Option<String> {
        match section.string(ctx, key) {
            Some(value) if value.trim().is_empty() => {
                ctx.error(&section.path_of(key), "must not be empty");
                ok.set(false);
                None
            }
            Some(value) => Some(value),
            None => {
                if section.has(key) || required {
                    if !section.has(key) {
                        ctx.error(&section.path_of(key), "required with http.auth.ldap");
                    }
                    ok.set(false);
                }
                None
            }
        }
    };
    let address = text(ctx, "address", true);
    let base_dn = text(ctx, "baseDN", true);
    let user_attribute = text(ctx, "userAttribute", false);
    let user_filter = text(ctx, "userFilter", false);
    let user_group_attribute = text(ctx, "userGroupAttribute", false);
    let cacert = text(ctx, "cacert", false).map(PathBuf::from);
    let inline_dn = text(ctx, "bindDN", false);
    let inline_password = match section.string(ctx, "bindPassword") {
        Some(password) => Some(password),
        None => {
            if section.has("bindPassword") {
                ok.set(false);
            }
            None
        }
    };
    let credentials_file = text(ctx, "credentialsFile", false);
    let flag = |ctx: &mut Ctx, key: &str| match section.boolean(ctx, key) {
        Some(value) => value,
        None => {
            if section.has(key) {
                ok.set(false);
            }
            false
        }
    };
    let insecure = flag(ctx, "insecure");
    let start_tls = flag(ctx, "startTLS");
    let skip_verify = flag(ctx, "skipVerify");
    let subtree_search = flag(ctx, "subtreeSearch");
    let port = match section.has("port") {
        true => section
            .integer(ctx, "port", 1, 65535)
            .map(|port| port as u16),
        false => None,
    };
    if section.has("port") && port.is_none() {
        ok.set(false);
    }
    if let Some(filter) = &user_filter {
        if !(filter.starts_with('(') && filter.ends_with(')')) {
            ctx.error(
                &section.path_of("userFilter"),
                "must be a parenthesised LDAP filter, e.g. (objectClass=person)",
            );
            ok.set(false);
        }
    }
    if let Some(attribute) = &user_attribute {
        let valid = attribute
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ';');
        if !valid {
            ctx.error(
                &section.path_of("userAttribute"),
                "must be an attribute name (letters, digits, '-', '.')",
            );
            ok.set(false);
        }
    }
    let transport = match (insecure, start_tls) {
        (_, true) => LdapTransport::StartTls,
        (true, false) => {
            ctx.warn(
                &section.path_of("insecure"),
                "the directory is reached in clear text: passwords cross the network unencrypted",
            );
            LdapTransport::Plain
        }
        (false, false) => LdapTransport::Ldaps,
    };
    if skip_verify {
        ctx.warn(
            &section.path_of("skipVerify"),
            "the directory's certificate is not verified: anyone on the path can read passwords",
        );
    }
    if credentials_file.is_some() && (inline_dn.is_some() || inline_password.is_some()) {
        ctx.warn(
            &section.path_of("credentialsFile"),
            "bindDN and bindPassword are also set inline; the file's are used",
        );
    }
    if !ok.get() {
        return None;
    }
    let port = port.unwrap_or(match transport {
        LdapTransport::Ldaps => 636,
        _ => 389,
    });
    Some(Some(LdapConfig {
        address: address?,
        port,
        transport,
        skip_verify,
        cacert,
        base_dn: base_dn?,
        user_attribute: user_attribute.unwrap_or_else(|| "uid".to_owned()),
        user_filter,
        user_group_attribute,
        subtree_search,
        bind_dn: inline_dn,
        bind_password: inline_password,
        credentials_file: credentials_file.map(PathBuf::from),
    }))
}

impl LdapConfig {
    /// The service account: `credentialsFile`'s when set (read now: blocking), else the inline
    /// pair. Errors name the file, never its contents.
    pub fn service_account(&self) -> Result<(Option<String>, Option<String>), String> {
        match &self.credentials_file {
            Some(path) => read_credentials(path),
            None => Ok((self.bind_dn.clone(), self.bind_password.clone())),
        }
    }
}

/// The service account from zot's credentials file: `{"bindDN": ..., "bindPassword": ...}`.
fn read_credentials(path: &std::path::Path) -> Result<(Option<String>, Option<String>), String> {
    let shown = path.display();
    let unreadable = |reason: String| format!("cannot use credentials file {shown}: {reason}");
    let metadata = std::fs::metadata(path).map_err(|error| unreadable(error.to_string()))?;
    if !metadata.is_file() || metadata.len() > MAX_CREDENTIALS_BYTES {
        return Err(unreadable(format!(
            "not a regular file of at most {MAX_CREDENTIALS_BYTES} bytes"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|error| unreadable(error.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| unreadable("not a JSON object".to_owned()))?;
    let field = |name: &str| -> Result<Option<String>, String> {
        let found = value.as_object().and_then(|object| {
            object
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
        });
        match found {
            None => Ok(None),
            Some((_, serde_json::Value::String(text))) => Ok(Some(text.clone())),
            Some(_) => Err(unreadable(format!("{name} must be a string"))),
        }
    };
    if !value.is_object() {
        return Err(unreadable("not a JSON object".to_owned()));
    }
    Ok((field("bindDN")?, field("bindPassword")?))
}
