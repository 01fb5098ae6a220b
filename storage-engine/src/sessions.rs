//! Browser login sessions (the web UI's), in the `sessions` family. Not upload sessions,
//! which are upload.rs's and live in `uploads`.
//!
//! Rules:
//! - A token is 32 random bytes from `/dev/urandom`, handed out once as 64 lowercase hex
//!   characters. The key is the SHA-256 of those 32 bytes, so the index never holds a token
//!   that opens a session, and a lookup compares no secret byte by byte.
//! - Value: `version u8 = 1, expires_unix u64 (seconds since the Unix epoch, big-endian),
//!   csrf 32 bytes (raw; 64 hex characters in [`Session::csrf`]), user (rest, UTF-8)`. A
//!   value that does not decode is `StorageError::Corrupt`.
//! - A session is expired from its `expires_unix` second on and is then never returned;
//!   [`Engine::prune_sessions`] deletes expired ones.
//! - Creating and ending a session are synced writes (durable when they return, with
//!   `storage.commit`), refused by a read-only engine. Reads are one point lookup.
use std::io::Read;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Batch, Cf};

/// Bytes of randomness in a token and in a CSRF secret.
const SECRET_BYTES: usize = 32;
/// The value layout's version byte.
const VALUE_VERSION: u8 = 1;
/// version + expires_unix + csrf: the value's bytes before the user name.
const VALUE_HEADER_BYTES: usize = 1 + 8 + SECRET_BYTES;

/// A logged-in browser session.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The user name it was created for.
    pub user: String,
    /// The session's CSRF secret: 64 lowercase hex characters (32 random bytes).
    pub csrf: String,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_unix: u64,
}

impl std::fmt::Debug for Session {
    /// Leaves the CSRF secret out, so a logged session does not leak it.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Session")
            .field("user", &self.user)
            .field("expires_unix", &self.expires_unix)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn encode(&self, csrf: &[u8; SECRET_BYTES]) -> Vec<u8> {
        let mut value = Vec::with_capacity(VALUE_HEADER_BYTES + self.user.len());
        value.push(VALUE_VERSION);
        value.extend_from_slice(&self.expires_unix.to_be_bytes());
        value.extend_from_slice(csrf);
        value.extend_from_slice(self.user.as_bytes());
        value
    }

    fn decode(value: &[u8]) -> Result<Session, StorageError> {
        let corrupt = || StorageError::Corrupt("bad login session record".into());
        if value.len() < VALUE_HEADER_BYTES || value[0] != VALUE_VERSION {
            return Err(corrupt());
        }
        let expires = value[1..9].try_into().expect("slice of 8");
        let user = std::str::from_utf8(&value[VALUE_HEADER_BYTES..]).map_err(|_| corrupt())?;
        Ok(Session {
            user: user.to_owned(),
            csrf: hex::encode(&value[9..VALUE_HEADER_BYTES]),
            expires_unix: u64::from_be_bytes(expires),
        })
    }

    fn expired(&self, now_unix: u64) -> bool {
        now_unix >= self.expires_unix
    }
}

/// Seconds since the Unix epoch.
fn now_unix() -> u64 {
    index::now_ms() / 1000
}

/// `N` bytes from the kernel's random source (never blocks once the system has booted).
fn random_bytes<const N: usize>() -> Result<[u8; N], StorageError> {
    let mut bytes = [0; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The key of `token`: SHA-256 of its 32 bytes. `None` unless the token is 64 lowercase hex
/// characters (what [`Engine::create_session`] hands out).
fn token_key(token: &str) -> Option<Vec<u8>> {
    let lowercase_hex = |byte: &u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte);
    if token.len() != 2 * SECRET_BYTES || !token.as_bytes().iter().all(lowercase_hex) {
        return None;
    }
    let bytes = hex::decode(token).ok()?;
    Some(Sha256::digest(&bytes).to_vec())
}

/// fsck's view of one record: `Err` when it does not decode (or its key is not a hash).
pub(crate) fn check_record(key: &[u8], value: &[u8]) -> Result<bool, StorageError> {
    if key.len() != SECRET_BYTES {
        return Err(StorageError::Corrupt(
            "login session key is not a hash".into(),
        ));
    }
    Ok(Session::decode(value)?.expired(now_unix()))
}

impl Engine {
    /// Starts a session of `user` that lasts `lifetime` (whole seconds); returns its token
    /// (64 hex characters, shown to the browser once) and the session. Durable when it
    /// returns. Cancel: the record is written whole or not at all; a dropped call's token is
    /// lost, so its session is unusable and pruned once expired.
    pub async fn create_session(
        &self,
        user: &str,
        lifetime: Duration,
    ) -> Result<(String, Session), StorageError> {
        self.inner.writable()?;
        let secrets: [u8; 2 * SECRET_BYTES] = random_bytes()?;
        let (token, csrf) = secrets.split_at(SECRET_BYTES);
        let csrf: &[u8; SECRET_BYTES] = csrf.try_into().expect("split at SECRET_BYTES");
        let token = hex::encode(token);
        let session = Session {
            user: user.to_owned(),
            csrf: hex::encode(csrf),
            expires_unix: now_unix().saturating_add(lifetime.as_secs()),
        };
        let key = token_key(&token).expect("a token made here is well formed");
        let mut batch = Batch::default();
        batch.put(Cf::Sessions, key, session.encode(csrf));
        self.inner.write_index(batch).await?;
        Ok((token, session))
    }

    /// The live session of `token`: `None` when the token is malformed, unknown or its
    /// session expired. One point lookup.
    pub async fn session(&self, token: &str) -> Result<Option<Session>, StorageError> {
        let Some(key) = token_key(token) else {
            return Ok(None);
        };
        let Some(value) = self.inner.index.get(Cf::Sessions, &key).await? else {
            return Ok(None);
        };
        let session = Session::decode(&value)?;
        Ok((!session.expired(now_unix())).then_some(session))
    }

    /// Ends the session of `token` (logout); true when a record existed, expired or not.
    /// Durable when it returns. Two concurrent calls may both answer true. Cancel: the
    /// delete is applied or not.
    pub async fn end_session(&self, token: &str) -> Result<bool, StorageError> {
        self.inner.writable()?;
        let Some(key) = token_key(token) else {
            return Ok(false);
        };
        if !self.inner.index.contains(Cf::Sessions, &key).await? {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.delete(Cf::Sessions, key);
        self.inner.write_index(batch).await?;
        Ok(true)
    }

    /// Deletes every expired session, and every expired single sign-on login in flight
    /// (ssologins.rs); returns how many. Scans the family inline (one entry
    /// per login still within its lifetime or not yet pruned), then writes one batch.
    /// Cancel: the deletes are applied together or not at all.
    pub async fn prune_sessions(&self) -> Result<usize, StorageError> {
        self.inner.writable()?;
        let now = now_unix();
        let mut batch = Batch::default();
        let mut expired = 0;
        self.inner
            .index
            .visit(Cf::Sessions, b"", None, |key, value| {
                if Session::decode(value)?.expired(now) {
                    batch.delete(Cf::Sessions, key.to_vec());
                    expired += 1;
                }
                Ok(true)
            })
            .await?;
        if !batch.is_empty() {
            self.inner.write_index(batch).await?;
        }
        Ok(expired + self.prune_sso_logins().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_and_a_bad_one_is_corrupt() {
        let csrf = [0xab; SECRET_BYTES];
        let session = Session {
            user: "alice".into(),
            csrf: "ab".repeat(SECRET_BYTES),
            expires_unix: 1_700_000_000,
        };
        let value = session.encode(&csrf);
        assert_eq!(Session::decode(&value).expect("decodes"), session);
        let empty_user = Session {
            user: String::new(),
            ..session.clone()
        };
        assert_eq!(
            Session::decode(&empty_user.encode(&csrf)).expect("decodes"),
            empty_user
        );
        let mut other_version = value.clone();
        other_version[0] = 2;
        let mut not_utf8 = value.clone();
        not_utf8.push(0xff);
        for bad in [
            &value[..VALUE_HEADER_BYTES - 1],
            &[][..],
            &other_version,
            &not_utf8,
        ] {
            assert!(
                matches!(Session::decode(bad), Err(StorageError::Corrupt(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_a_well_formed_token_has_a_key() {
        let token = "0123456789abcdef".repeat(4);
        let key = token_key(&token).expect("well formed");
        assert_eq!(key.len(), SECRET_BYTES);
        assert_ne!(key, hex::decode(&token).expect("hex"), "the key is a hash");
        for bad in [
            String::new(),
            token[..63].to_owned(),
            format!("{token}0"),
            token.to_uppercase(),
            format!("{}g", &token[..63]),
            format!("{}é", &token[..62]),
        ] {
            assert_eq!(token_key(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_session_expires_at_its_second() {
        let session = Session {
            user: "bob".into(),
            csrf: "cd".repeat(SECRET_BYTES),
            expires_unix: 100,
        };
        assert!(!session.expired(99));
        assert!(session.expired(100));
        assert!(!format!("{session:?}").contains(&session.csrf));
    }
}
