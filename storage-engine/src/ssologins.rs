//! Single sign-on logins in flight (OpenID Connect's authorization-code flow), in the
//! `sso_logins` family: what the daemon must remember between sending a browser to the
//! identity provider and the provider sending it back (the provider's name, the nonce, the
//! PKCE verifier, where to go after). The engine keeps the daemon's bytes as they are.
//!
//! Rules:
//! - Key: the SHA-256 of the login's `state` (the random value in the redirect), so the index
//!   never holds a value that completes a login. Value: `version u8 = 1, expires_unix u64
//!   (big-endian), payload (rest)`. A value that does not decode is `StorageError::Corrupt`.
//! - A record is taken at most once: [`Engine::take_sso_login`] reads and deletes it under
//!   one lock, so two callbacks carrying the same state cannot both complete. An expired
//!   record is never returned (it is deleted when met) and pruned with the UI's sessions.
//! - Writes go through the index's commit path (synced with `storage.commit`).
use sha2::{Digest as _, Sha256};

use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Batch, Cf};

const VALUE_VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 8;
/// Largest payload kept (a provider name, a nonce, a verifier and a path fit in far less).
pub const MAX_PAYLOAD_BYTES: usize = 4096;

fn key(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

fn encode(expires_unix: u64, payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER_BYTES + payload.len());
    value.push(VALUE_VERSION);
    value.extend_from_slice(&expires_unix.to_be_bytes());
    value.extend_from_slice(payload);
    value
}

/// `(expires_unix, payload)`.
fn decode(value: &[u8]) -> Result<(u64, &[u8]), StorageError> {
    if value.len() < HEADER_BYTES || value[0] != VALUE_VERSION {
        return Err(StorageError::Corrupt(
            "bad single sign-on login record".into(),
        ));
    }
    let expires = u64::from_be_bytes(value[1..HEADER_BYTES].try_into().expect("slice of 8"));
    Ok((expires, &value[HEADER_BYTES..]))
}

fn now_unix() -> u64 {
    index::now_ms() / 1000
}

/// fsck's view of one record: whether it expired, or why it does not decode.
pub(crate) fn check_record(key: &[u8], value: &[u8]) -> Result<bool, StorageError> {
    if key.len() != 32 {
        return Err(StorageError::Corrupt(
            "single sign-on login key is not a hash".into(),
        ));
    }
    decode(value).map(|(expires, _)| now_unix() >= expires)
}

impl Engine {
    /// Remembers a login in flight under `state` for `lifetime` (whole seconds). Durable
    /// when it returns. A payload over [`MAX_PAYLOAD_BYTES`] is `TooLarge`.
    pub async fn put_sso_login(
        &self,
        state: &str,
        payload: &[u8],
        lifetime: std::time::Duration,
    ) -> Result<(), StorageError> {
        self.inner.writable()?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(StorageError::TooLarge);
        }
        let expires = now_unix().saturating_add(lifetime.as_secs());
        let mut batch = Batch::default();
        batch.put(Cf::SsoLogins, key(state), encode(expires, payload));
        self.inner.write_index(batch).await
    }

    /// Takes the login in flight under `state`: its payload, once; `None` when unknown,
    /// already taken or expired. Cancel: the delete is applied or not; a caller dropped
    /// before it returns may have spent the record.
    pub async fn take_sso_login(&self, state: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.writable()?;
        let key = key(state);
        let mut held = crate::lock::Held::default();
        let name = format!("sso-login:{}", hex::encode(&key));
        held.take(&self.inner.index, &self.inner.named, &name, false)
            .await?;
        let Some(value) = self.inner.index.get(Cf::SsoLogins, &key).await? else {
            return Ok(None);
        };
        let (expires, payload) = decode(&value)?;
        let payload = (now_unix() < expires).then(|| payload.to_vec());
        let mut batch = Batch::default();
        batch.delete(Cf::SsoLogins, key);
        self.inner.write_held(batch, &held).await?;
        Ok(payload)
    }

    /// Deletes every expired login in flight; returns how many.
    pub(crate) async fn prune_sso_logins(&self) -> Result<usize, StorageError> {
        let now = now_unix();
        let mut batch = Batch::default();
        let mut expired = 0;
        self.inner
            .index
            .visit(Cf::SsoLogins, b"", None, |key, value| {
                if decode(value).map_or(true, |(expires, _)| now >= expires) {
                    batch.delete(Cf::SsoLogins, key.to_vec());
                    expired += 1;
                }
                Ok(true)
            })
            .await?;
        if !batch.is_empty() {
            self.inner.write_index(batch).await?;
        }
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_bad_one_is_corrupt() {
        let value = encode(1_700_000_000, b"{\"p\":1}");
        assert_eq!(
            decode(&value).expect("decodes"),
            (1_700_000_000, &b"{\"p\":1}"[..])
        );
        let mut other_version = value.clone();
        other_version[0] = 2;
        for bad in [&value[..HEADER_BYTES - 1], &[][..], &other_version[..]] {
            assert!(matches!(decode(bad), Err(StorageError::Corrupt(_))));
        }
        assert!(check_record(b"short", &value).is_err());
        assert_eq!(check_record(&key("s"), &value).ok(), Some(true));
        assert_eq!(key("s").len(), 32);
        assert_ne!(key("s"), key("t"));
    }
}
