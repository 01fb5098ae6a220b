//! LDAP logins (`http.auth.ldap`): one user name and password checked against a directory,
//! and the user's groups read from it.
//!
//! Rules:
//! - A login: connect (LDAPS, or plain then StartTLS, or plain when `insecure`), bind as the
//!   service account (or none: anonymous search), search `baseDN` (its children, or the whole
//!   subtree with `subtreeSearch`) for `(&(userAttribute=NAME)userFilter)` asking for
//!   `userGroupAttribute`, require exactly one entry, then bind as that entry's DN with the
//!   password. A fresh connection per login (logins are cached above this module).
//! - The name is escaped with RFC 4515 rules before it enters the filter, so `*`, `(`, `)`,
//!   `\` and NUL match themselves and never widen the search. An empty password is refused
//!   before any directory call (an empty simple bind is an anonymous bind, which succeeds).
//! - Every call is blocking and bounded by [`TIMEOUT`]: callers run it on the blocking pool,
//!   never on a shard. A directory that is down, slow or answers nonsense is
//!   [`Verdict::Unavailable`], not a wrong password.
//! - Groups: each value of `userGroupAttribute`, as written (a DN for `memberOf`), and for a
//!   DN also its first RDN's value (`cn=devs,ou=groups,dc=example,dc=org` gives that DN and
//!   `devs`), so `accessControl.groups` may name either.
//! - Nothing here logs; the caller logs the user, address and [`Verdict`] (never the
//!   password or the bind password).

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use ldap3::{LdapConn, LdapConnSettings, Scope, SearchEntry};

use crate::config::{LdapConfig, LdapTransport};

/// Bound on connecting and on each directory operation.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest user name sent to the directory.
const MAX_USER_BYTES: usize = 256;

/// What the directory said about one login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The password is the user's; their groups.
    Verified(Vec<String>),
    /// No such user, several entries for the name, or the wrong password.
    Refused(&'static str),
    /// The directory could not answer (down, timeout, TLS, service bind refused).
    Unavailable(String),
}

/// The directory of `http.auth.ldap`.
pub struct Directory {
    config: LdapConfig,
    /// The service account (from `credentialsFile` or inline).
    bind_dn: Option<String>,
    bind_password: Option<String>,
    url: String,
    /// The TLS setup when `cacert` names the CAs to trust (else the system's, or none with
    /// `skipVerify`).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Directory")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// Prepares the directory (reads `cacert`; blocking, at startup).
    pub fn new(config: &LdapConfig) -> Result<Directory, String> {
        let scheme = match config.transport {
            LdapTransport::Ldaps => "ldaps",
            LdapTransport::StartTls | LdapTransport::Plain => "ldap",
        };
        let host = match config.address.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{}]", config.address),
            Err(_) => config.address.clone(),
        };
        let url = format!("{scheme}://{host}:{}", config.port);
        let tls = match (&config.cacert, config.skip_verify) {
            (Some(path), false) => Some(Arc::new(client_config(path)?)),
            _ => None,
        };
        let (bind_dn, bind_password) = config
            .service_account()
            .map_err(|error| format!("ldap.credentialsFile: {error}"))?;
        Ok(Directory {
            config: config.clone(),
            bind_dn,
            bind_password,
            url,
            tls,
        })
    }

    /// Checks `user`'s `password` (blocking: run on the blocking pool).
    pub fn authenticate(&self, user: &str, password: &str) -> Verdict {
        if password.is_empty() {
            return Verdict::Refused("empty password");
        }
        if user.is_empty() || user.len() > MAX_USER_BYTES {
            return Verdict::Refused("unknown user");
        }
        match self.login(user, password) {
            Ok(verdict) => verdict,
            Err(error) => Verdict::Unavailable(error.to_string()),
        }
    }

    fn connect(&self) -> ldap3::result::Result<LdapConn> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(TIMEOUT)
            .set_starttls(self.config.transport == LdapTransport::StartTls);
        if self.config.skip_verify {
            settings = settings.set_no_tls_verify(true);
        } else if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let mut connection = LdapConn::with_settings(settings, &self.url)?;
        connection.with_timeout(TIMEOUT);
        Ok(connection)
    }

    fn login(&self, user: &str, password: &str) -> ldap3::result::Result<Verdict> {
        let mut connection = self.connect()?;
        if let Some(bind_dn) = &self.bind_dn {
            let bind_password = self.bind_password.as_deref().unwrap_or("");
            connection.with_timeout(TIMEOUT);
            if let Err(error) = connection.simple_bind(bind_dn, bind_password)?.success() {
                return Ok(Verdict::Unavailable(format!(
                    "the service account's bind was refused: {error}"
                )));
            }
        }
        let filter = format!(
            "(&({}={}){})",
            self.config.user_attribute,
            ldap3::ldap_escape(user),
            self.config.user_filter.as_deref().unwrap_or("")
        );
        let scope = match self.config.subtree_search {
            true => Scope::Subtree,
            false => Scope::OneLevel,
        };
        let attributes: Vec<&str> = match &self.config.user_group_attribute {
            Some(attribute) => vec![attribute.as_str()],
            None => vec!["1.1"],
        };
        connection.with_timeout(TIMEOUT);
        let (entries, _) = connection
            .search(&self.config.base_dn, scope, &filter, attributes)?
            .success()?;
        let entry = match entries.len() {
            0 => return Ok(Verdict::Refused("unknown user")),
            1 => SearchEntry::construct(entries.into_iter().next().expect("one entry")),
            _ => {
                return Ok(Verdict::Refused(
                    "the name matches several directory entries",
                ))
            }
        };
        connection.with_timeout(TIMEOUT);
        let bound = connection.simple_bind(&entry.dn, password)?;
        let _ = connection.unbind();
        if bound.rc != 0 {
            return Ok(Verdict::Refused("wrong password"));
        }
        let groups = match &self.config.user_group_attribute {
            Some(attribute) => groups_of(&entry, attribute),
            None => Vec::new(),
        };
        Ok(Verdict::Verified(groups))
    }
}

/// The values of `attribute` (matched case-insensitively) and, for DNs, their first RDN's
/// value.
fn groups_of(entry: &SearchEntry, attribute: &str) -> Vec<String> {
    let mut groups = Vec::new();
    let values = entry
        .attrs
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .flat_map(|(_, values)| values);
    for value in values {
        groups.push(value.clone());
        if let Some(short) = first_rdn_value(value) {
            groups.push(short);
        }
    }
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// `devs` from `cn=devs,ou=groups,...`: the value of a DN's first RDN, when the value is
/// plain (no escapes, no multi-valued RDN). `None` for anything that is not such a DN.
fn first_rdn_value(value: &str) -> Option<String> {
    let (first, rest) = value.split_once(',')?;
    let (kind, name) = first.split_once('=')?;
    let plain = !name.is_empty() && !name.contains(['\\', '+', '"']) && !rest.is_empty();
    let kind_ok = !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    (plain && kind_ok).then(|| name.trim().to_owned())
}

/// A TLS client setup trusting only the CA certificates in `path` (PEM).
fn client_config(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let what = |error: String| format!("http.auth.ldap.cacert {}: {error}", path.display());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path).map_err(|e| what(e.to_string()))? {
        roots
            .add(certificate.map_err(|e| what(e.to_string()))?)
            .map_err(|e| what(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(what("no PEM certificate".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| what(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_the_values_and_the_names_their_dns_start_with() {
        let entry = SearchEntry {
            dn: "uid=alice,ou=people,dc=example,dc=org".into(),
            attrs: [(
                "memberOf".to_owned(),
                vec![
                    "cn=devs,ou=groups,dc=example,dc=org".to_owned(),
                    "cn=a\\,b,ou=groups,dc=example,dc=org".to_owned(),
                    "plain-group".to_owned(),
                ],
            )]
            .into_iter()
            .collect(),
            bin_attrs: Default::default(),
        };
        assert_eq!(
            groups_of(&entry, "memberof"),
            [
                "cn=a\\,b,ou=groups,dc=example,dc=org",
                "cn=devs,ou=groups,dc=example,dc=org",
                "devs",
                "plain-group",
            ]
        );
        assert!(groups_of(&entry, "groups").is_empty());
    }

    #[test]
    fn nothing_reaches_the_directory_without_a_password() {
        let config = LdapConfig {
            address: "127.0.0.1".into(),
            port: 1,
            transport: LdapTransport::Plain,
            skip_verify: false,
            cacert: None,
            base_dn: "dc=example,dc=org".into(),
            user_attribute: "uid".into(),
            user_filter: None,
            user_group_attribute: None,
            subtree_search: false,
            bind_dn: None,
            bind_password: None,
            credentials_file: None,
        };
        let directory = Directory::new(&config).expect("builds");
        assert_eq!(
            directory.authenticate("alice", ""),
            Verdict::Refused("empty password")
        );
        assert!(matches!(
            directory.authenticate("alice", "secret"),
            Verdict::Unavailable(_)
        ));
    }
}

/// How long a verified LDAP login is remembered: a password changed or a group left in the
/// directory counts from the next login after this.
pub const LOGIN_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most LDAP logins remembered; when full, the cache starts over.
const MAX_CACHED_LOGINS: usize = 4096;

/// The groups the directory gave each user at their last login: read by access control
/// beside `accessControl.groups`, replaced (never merged) at every directory login, and kept
/// in the storage engine's index (`user_groups`) so that sessions and API keys used after a
/// restart keep them. Cached in memory per user (bounded).
///
/// Access control's checks are synchronous and read the memory only ([`DirectoryGroups::of`]);
/// the index is read, awaited, where a request's user becomes known
/// ([`DirectoryGroups::load`], through `access::load_groups`).
#[derive(Default)]
pub struct DirectoryGroups {
    by_user: std::sync::RwLock<std::collections::HashMap<String, Arc<[String]>>>,
    engine: Option<Arc<berth_storage::Engine>>,
}

impl std::fmt::Debug for DirectoryGroups {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DirectoryGroups")
            .finish_non_exhaustive()
    }
}

impl DirectoryGroups {
    /// Groups kept in `engine`'s index.
    pub fn stored(engine: Arc<berth_storage::Engine>) -> DirectoryGroups {
        DirectoryGroups {
            by_user: Default::default(),
            engine: Some(engine),
        }
    }

    /// Brings `user`'s groups into memory when they are not there: one index read.
    pub async fn load(&self, user: &str) {
        if self.cached(user).is_some() {
            return;
        }
        if let Some(engine) = &self.engine {
            let read = engine.user_groups(user).await;
            self.read(user, read);
        }
    }

    /// `user`'s directory groups (empty when none or never logged in through LDAP), from
    /// memory: [`DirectoryGroups::load`] put them there when the request's user became known.
    /// A miss (a caller that did not load, or the cache started over in between) polls the
    /// index read once: the embedded index answers at that poll, so the groups are read as a
    /// load would have; a read that cannot answer at once counts as no directory groups
    /// (fewer rights, never more) and is logged.
    pub fn of(&self, user: &str) -> Arc<[String]> {
        if let Some(groups) = self.cached(user) {
            return groups;
        }
        let Some(engine) = &self.engine else {
            return Arc::from(Vec::new());
        };
        match engine.user_groups(user).now_or_never() {
            Some(read) => self.read(user, read),
            None => {
                tracing::warn!(
                    user,
                    "a user's directory groups were not loaded: none assumed"
                );
                Arc::from(Vec::new())
            }
        }
    }

    fn cached(&self, user: &str) -> Option<Arc<[String]>> {
        self.by_user
            .read()
            .expect("the groups lock is never poisoned")
            .get(user)
            .cloned()
    }

    /// Remembers what an index read of `user`'s groups gave; a failed read is logged and
    /// counts as no groups (not remembered: the next request reads again).
    fn read(
        &self,
        user: &str,
        read: Result<Vec<String>, berth_storage::StorageError>,
    ) -> Arc<[String]> {
        match read {
            Ok(groups) => {
                let groups: Arc<[String]> = Arc::from(groups);
                self.remember(user, groups.clone());
                groups
            }
            Err(error) => {
                tracing::error!(user, %error, "reading a user's directory groups failed");
                Arc::from(Vec::new())
            }
        }
    }

    /// Replaces `user`'s groups (an empty list forgets them), in memory and in the index.
    pub async fn set(&self, user: &str, groups: Vec<String>) {
        if let Some(engine) = &self.engine {
            if let Err(error) = engine.set_user_groups(user, &groups).await {
                tracing::error!(user, %error, "storing a user's directory groups failed");
            }
        }
        self.remember(user, Arc::from(groups));
    }

    fn remember(&self, user: &str, groups: Arc<[String]>) {
        let mut by_user = self
            .by_user
            .write()
            .expect("the groups lock is never poisoned");
        if by_user.len() >= MAX_CACHED_LOGINS && !by_user.contains_key(user) {
            by_user.clear();
        }
        by_user.insert(user.to_owned(), groups);
    }
}

/// What an LDAP login attempt came to, for the authenticator.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    Verified,
    /// The directory says no (the reason is for the log).
    Refused(&'static str),
    /// The directory could not be asked.
    Unavailable,
}

/// The directory with its login cache: what the authenticator asks.
pub struct LdapLogins {
    directory: Arc<Directory>,
    groups: Arc<DirectoryGroups>,
    /// (user, salted password hash) -> when verified.
    verified: std::sync::Mutex<std::collections::HashMap<(String, [u8; 32]), std::time::Instant>>,
}

impl LdapLogins {
    pub fn new(config: &LdapConfig, groups: Arc<DirectoryGroups>) -> Result<LdapLogins, String> {
        let directory = Arc::new(Directory::new(config)?);
        tracing::info!(directory = %directory.url, "LDAP authentication on");
        Ok(LdapLogins {
            directory,
            groups,
            verified: Default::default(),
        })
    }

    /// Whether this login was verified within [`LOGIN_CACHE_TTL`]; `key` is the user and the
    /// authenticator's salted hash of the password.
    pub fn is_cached(&self, key: &(String, [u8; 32])) -> bool {
        let verified = self
            .verified
            .lock()
            .expect("the login cache lock is never poisoned");
        verified
            .get(key)
            .is_some_and(|at| at.elapsed() < LOGIN_CACHE_TTL)
    }

    /// Asks the directory (on the blocking pool) and remembers a success and its groups.
    pub async fn login(&self, key: (String, [u8; 32]), password: &[u8]) -> Login {
        let Ok(password) = std::str::from_utf8(password).map(str::to_owned) else {
            return Login::Refused("the password is not UTF-8");
        };
        let directory = self.directory.clone();
        let user = key.0.clone();
        let verdict =
            tokio::task::spawn_blocking(move || directory.authenticate(&user, &password)).await;
        match verdict {
            Ok(Verdict::Verified(groups)) => {
                self.groups.set(&key.0, groups).await;
                let mut verified = self
                    .verified
                    .lock()
                    .expect("the login cache lock is never poisoned");
                if verified.len() >= MAX_CACHED_LOGINS {
                    verified.clear();
                }
                verified.insert(key, std::time::Instant::now());
                Login::Verified
            }
            Ok(Verdict::Refused(reason)) => Login::Refused(reason),
            Ok(Verdict::Unavailable(error)) => {
                tracing::error!(directory = %self.directory.url, %error, "LDAP directory unavailable: login refused");
                Login::Unavailable
            }
            Err(_) => {
                tracing::error!(directory = %self.directory.url, "LDAP login failed inside the client: login refused");
                Login::Unavailable
            }
        }
    }

    /// Forgets `user`'s directory groups (they logged in by another method).
    pub async fn forget_groups(&self, user: &str) {
        self.groups.set(user, Vec::new()).await;
    }
}
