//! `http.auth`, typed: zot's Basic authentication against htpasswd (`htpasswd.path`) and LDAP
//! (`ldap`, config/ldap.rs) with `failDelay`, API keys (`apikey`), bearer tokens (`bearer`,
//! config/bearer.rs), the mTLS identity (`mtls`, config/tls.rs), and the htpasswd file format
//! ([`Htpasswd`]).
//!
//! Rules:
//! - htpasswd, LDAP and bearer are the methods berth enforces. As in zot, a `bearer` section
//!   makes tokens the only way in: `htpasswd`, `ldap`, `openid` and `apikey` beside it are
//!   ignored with a warning. `openid` (config/openid.rs) logs people into the web UI; as in
//!   zot it turns API keys on (the way its users reach the API). With none of `htpasswd`,
//!   `ldap`, `openid` and `bearer`, the section is ignored with the loud "no authentication"
//!   warning.
//! - `apikey: true` needs `htpasswd`, `ldap` or `openid` (a key belongs to a user who logs
//!   in); without them it is ignored with a warning.
//! - The htpasswd file is read when the config loads, so `berth verify` and `berth serve`
//!   refuse a missing file or a line that is not `user:bcrypt-hash` (`$2a$`, `$2b$`, `$2y$`:
//!   zot accepts bcrypt only), naming the file and the line. The running daemon re-reads the
//!   file itself when it changes (auth/htpasswd.rs); the config keeps only the path.
//! - No password or hash ever appears in an error message.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::walk::{Ctx, Section};

/// Largest `http.auth.failDelay`, in seconds (a longer delay only ties up connections).
pub const MAX_FAIL_DELAY_SECONDS: u64 = 600;
/// Largest htpasswd file read (a million users is ~70 MB; this is a sanity bound).
pub const MAX_HTPASSWD_BYTES: u64 = 64 * 1024 * 1024;

const SESSIONS: &str = "ignored: berth's UI sessions are random tokens kept (hashed) in the \
    storage engine's index, which needs no session key or session driver";
/// The warning on `http.auth` when it has neither htpasswd nor bearer: nothing authenticates.
pub(crate) const NO_AUTH_WARNING: &str =
    "none of http.auth.htpasswd, ldap, openid and bearer is set (the methods berth enforces); \
     ignored: EVERY CLIENT CAN PULL, PUSH AND DELETE WITHOUT CREDENTIALS";
const BEARER_ONLY: &str = "ignored: with http.auth.bearer set, berth (as zot) accepts bearer \
    tokens only";

/// `http.auth` with logins: htpasswd, LDAP (asked first, as zot), OpenID for the UI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// `http.auth.htpasswd.path`: the htpasswd file (bcrypt lines only), if any.
    pub htpasswd_path: Option<PathBuf>,
    /// `http.auth.ldap`: the directory.
    pub ldap: Option<super::LdapConfig>,
    /// `http.auth.openid`: single sign-on providers for the web UI.
    pub openid: Option<super::OpenIdConfig>,
    /// `http.auth.failDelay` (integer seconds, default 0): wait before answering a failed
    /// login.
    pub fail_delay: Duration,
    /// `http.auth.secureSession` (default false): the UI's session cookie is `Secure` (sent
    /// over HTTPS only; for berth behind a TLS-terminating proxy until berth serves TLS).
    pub secure_session: bool,
}

/// `http.auth`, typed: each method `None`/false when off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AuthSection {
    pub basic: Option<AuthConfig>,
    pub bearer: Option<super::bearer::BearerConfig>,
    pub apikey: bool,
    pub mtls: Option<super::tls::MtlsConfig>,
}

/// `http.auth`: every method off when the section is absent, `None` when it is invalid
/// (errors recorded in `ctx`).
pub(crate) fn auth(ctx: &mut Ctx, http: &Section<'_>) -> Option<AuthSection> {
    let Some(value) = http.raw("auth") else {
        return Some(AuthSection::default());
    };
    let path = http.path_of("auth");
    let section = Section::read(
        ctx,
        &path,
        value,
        &[
            "htpasswd",
            "failDelay",
            "secureSession",
            "bearer",
            "apikey",
            "mtls",
            "ldap",
            "openid",
        ],
        &[
            ("sessionKeysFile", SESSIONS),
            ("sessionHashKey", SESSIONS),
            ("sessionEncryptKey", SESSIONS),
            ("sessionDriver", SESSIONS),
        ],
    )?;
    let fail_delay = section.integer(ctx, "failDelay", 0, MAX_FAIL_DELAY_SECONDS);
    if section.has("failDelay") && fail_delay.is_none() {
        return None;
    }
    let secure_session = section.boolean(ctx, "secureSession");
    if section.has("secureSession") && secure_session.is_none() {
        return None;
    }
    let bearer = super::bearer::bearer(ctx, &section)?;
    let mtls = super::tls::mtls(ctx, &section)?;
    let ldap = super::ldap::ldap(ctx, &section)?;
    let openid = super::openid::openid(ctx, &section)?;
    let apikey = section.boolean(ctx, "apikey");
    if section.has("apikey") && apikey.is_none() {
        return None;
    }
    if bearer.is_some() {
        for key in ["htpasswd", "ldap", "openid", "apikey"] {
            if section.has(key) {
                ctx.warn(&section.path_of(key), BEARER_ONLY);
            }
        }
        return Some(AuthSection {
            bearer,
            mtls,
            ..AuthSection::default()
        });
    }
    let htpasswd_path = match section.raw("htpasswd") {
        Some(htpasswd) => Some(htpasswd_file(ctx, &section, htpasswd)?),
        None => None,
    };
    if htpasswd_path.is_none() && ldap.is_none() && openid.is_none() {
        ctx.warn(&path, NO_AUTH_WARNING);
        if apikey == Some(true) {
            ctx.warn(
                &section.path_of("apikey"),
                "ignored: API keys need http.auth.htpasswd, ldap or openid (a key belongs to a \
                 user who logs in)",
            );
        }
        return Some(AuthSection {
            mtls,
            ..AuthSection::default()
        });
    }
    let openid_on = openid.is_some();
    Some(AuthSection {
        basic: Some(AuthConfig {
            htpasswd_path,
            ldap,
            openid,
            fail_delay: Duration::from_secs(fail_delay.unwrap_or(0)),
            secure_session: secure_session.unwrap_or(false),
        }),
        bearer: None,
        apikey: apikey.unwrap_or(false) || openid_on,
        mtls,
    })
}

/// `http.auth.htpasswd.path`, its file checked.
fn htpasswd_file(
    ctx: &mut Ctx,
    section: &Section<'_>,
    htpasswd: &serde_json::Value,
) -> Option<PathBuf> {
    let htpasswd = Section::read(ctx, &section.path_of("htpasswd"), htpasswd, &["path"], &[])?;
    let key_path = htpasswd.path_of("path");
    let file = match htpasswd.string(ctx, "path") {
        Some(file) if file.trim().is_empty() => {
            ctx.error(&key_path, "must not be empty");
            return None;
        }
        Some(file) => PathBuf::from(file),
        None => {
            if !htpasswd.has("path") {
                ctx.error(&key_path, "required: the htpasswd file (bcrypt lines only)");
            }
            return None;
        }
    };
    if let Err(error) = Htpasswd::load(&file) {
        ctx.error(&key_path, error.to_string());
        return None;
    }
    Some(file)
}

/// The users of an htpasswd file: user name -> bcrypt hash.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl fmt::Debug for Htpasswd {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        formatter
            .debug_struct("Htpasswd")
            .field("users", &names)
            .finish_non_exhaustive()
    }
}

/// Why an htpasswd file was refused. Displays with the file path and, for a bad line, its
/// 1-based number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtpasswdError {
    #[error("cannot read htpasswd file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("htpasswd file {path} line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
}

impl Htpasswd {
    /// Reads and parses the htpasswd file at `path` (blocking file I/O).
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let unreadable = |reason: String| HtpasswdError::Unreadable {
            path: path.display().to_string(),
            reason,
        };
        let metadata = std::fs::metadata(path).map_err(|error| unreadable(error.to_string()))?;
        if !metadata.is_file() {
            return Err(unreadable("not a regular file".to_owned()));
        }
        if metadata.len() > MAX_HTPASSWD_BYTES {
            return Err(unreadable(format!(
                "larger than {MAX_HTPASSWD_BYTES} bytes"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|error| unreadable(error.to_string()))?;
        Htpasswd::parse(&text).map_err(|(line, reason)| HtpasswdError::Line {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    /// Parses htpasswd text: one `user:hash` per line; blank lines and lines starting with `#`
    /// are skipped. Fails with the 1-based line number and the reason.
    pub fn parse(text: &str) -> Result<Htpasswd, (usize, String)> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((number, "expected `user:bcrypt-hash`".to_owned()));
            };
            if user.is_empty() {
                return Err((number, "empty user name".to_owned()));
            }
            check_bcrypt(hash).map_err(|reason| (number, format!("user {user:?}: {reason}")))?;
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err((number, format!("user {user:?} is listed twice")));
            }
        }
        Ok(Htpasswd { users })
    }

    /// The bcrypt hash of `user`, if listed.
    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// A hash berth can verify: bcrypt `$2a$`, `$2b$` or `$2y$`, cost 4..=31, 60 characters.
fn check_bcrypt(hash: &str) -> Result<(), String> {
    let bcrypt = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix));
    if !bcrypt {
        return Err(format!(
            "the hash is not bcrypt ({}); berth, like zot, accepts bcrypt only ($2a$, $2b$, \
             $2y$: create it with `htpasswd -B`)",
            hash_kind(hash)
        ));
    }
    let parts: bcrypt::HashParts = hash
        .parse()
        .map_err(|error| format!("malformed bcrypt hash: {error}"))?;
    if !(4..=31).contains(&parts.get_cost()) {
        return Err(format!(
            "bcrypt cost {} is outside 4..=31",
            parts.get_cost()
        ));
    }
    Ok(())
}

/// What an htpasswd hash looks like, for the error message (never the hash itself).
fn hash_kind(hash: &str) -> &'static str {
    match hash {
        h if h.starts_with("$apr1$") => "Apache MD5, $apr1$",
        h if h.starts_with("{SHA}") => "SHA-1, {SHA}",
        h if h.starts_with("$1$") => "MD5-crypt, $1$",
        h if h.starts_with("$5$") => "SHA-256-crypt, $5$",
        h if h.starts_with("$6$") => "SHA-512-crypt, $6$",
        h if h.starts_with("$2x$") => "buggy-bcrypt, $2x$",
        "" => "empty",
        _ => "crypt or plain text",
    }
}
