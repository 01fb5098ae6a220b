//! API keys (`http.auth.apikey`), in the `api_keys` family: a user's long-lived secret that
//! works as their Basic password.
//!
//! Rules:
//! - A key is `zak_` followed by 32 lowercase hex characters: 16 random bytes from
//!   `/dev/urandom`, handed out once (zot's format). The index holds only the SHA-256 of those
//!   16 bytes, so nothing stored opens a registry, and a lookup is one point get by hash.
//! - Records (keys are the family's own, the hash is 32 raw bytes):
//!   - `k\0<hash>` -> the key's details: JSON `{"version":1, uuid, user, label, scopes,
//!     created_ms, expires_ms (null: never), creator_ua}`;
//!   - `u\0<user>\0<uuid>` -> `<hash>`: the keys of a user, to list and revoke them;
//!   - `l\0<hash>` -> last use, `u64` milliseconds since the Unix epoch, big-endian. Kept apart
//!     from `k` so that recording a use never rewrites the details: a late write of it after a
//!     revocation leaves at most a stray `l` record (fsck notes it), never a usable key.
//! - Creating and revoking are one synced batch each (durable when they return, with
//!   `storage.commit`), refused by a read-only engine. Revoking deletes all three records.
//! - A key is expired from its `expires_ms` on and is then never returned by
//!   [`Engine::api_key`] (it is still listed, as zot lists it, until revoked).
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{self, Batch, Cf};

/// What every key starts with (zot's).
pub const API_KEY_PREFIX: &str = "zak_";
/// Bytes of randomness in a key (shown as twice as many hex characters).
const KEY_BYTES: usize = 16;
/// The details' layout version.
const RECORD_VERSION: u8 = 1;
/// Bytes of a SHA-256.
const HASH_BYTES: usize = 32;

/// The stored identity of a key: the SHA-256 of its random bytes. What the daemon keeps in
/// memory (to throttle last-use writes) instead of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ApiKeyHash([u8; HASH_BYTES]);

/// What is known about a key, never the key itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Names the key to its owner (list, revoke).
    pub uuid: String,
    /// The user it logs in as.
    pub user: String,
    pub label: String,
    /// Repository globs it is limited to; empty: the user's full rights.
    pub scopes: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Milliseconds since the Unix epoch; `None` never expires.
    pub expires_ms: Option<u64>,
    /// The `User-Agent` of the request that created it.
    pub creator_ua: String,
}

impl ApiKey {
    /// Whether it no longer logs in at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|expires| now_ms >= expires)
    }
}

/// What the creator asks for.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub user: String,
    pub label: String,
    pub scopes: Vec<String>,
    pub expires_ms: Option<u64>,
    pub creator_ua: String,
}

/// A key as its owner's list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedApiKey {
    pub key: ApiKey,
    /// Milliseconds since the Unix epoch; `None` never used.
    pub last_used_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    version: u8,
    #[serde(flatten)]
    key: ApiKey,
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("bad API key record: {what}"))
}

fn encode(key: &ApiKey) -> Vec<u8> {
    let record = Record {
        version: RECORD_VERSION,
        key: key.clone(),
    };
    serde_json::to_vec(&record).expect("an API key record always serializes")
}

fn decode(value: &[u8]) -> Result<ApiKey, StorageError> {
    let record: Record = serde_json::from_slice(value).map_err(|_| corrupt("details"))?;
    if record.version != RECORD_VERSION {
        return Err(corrupt("unknown version"));
    }
    Ok(record.key)
}

fn decode_time(value: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| corrupt("last use"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The hash of `key`: `None` unless it is `zak_` + 32 lowercase hex characters (what
/// [`Engine::create_api_key`] hands out), so a malformed key is never looked up.
pub fn api_key_hash(key: &str) -> Option<ApiKeyHash> {
    let hex_part = key.strip_prefix(API_KEY_PREFIX)?;
    let lowercase_hex = |byte: &u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(byte);
    if hex_part.len() != 2 * KEY_BYTES || !hex_part.as_bytes().iter().all(lowercase_hex) {
        return None;
    }
    let bytes = hex::decode(hex_part).ok()?;
    Some(ApiKeyHash(Sha256::digest(&bytes).into()))
}

fn details_key(hash: &ApiKeyHash) -> Vec<u8> {
    [&b"k\0"[..], &hash.0].concat()
}

fn last_used_key(hash: &ApiKeyHash) -> Vec<u8> {
    [&b"l\0"[..], &hash.0].concat()
}

fn user_key(user: &str, uuid: &str) -> Vec<u8> {
    index::key(&["u", user, uuid])
}

/// `N` bytes from the kernel's random source.
fn random_bytes<const N: usize>() -> Result<[u8; N], StorageError> {
    let mut bytes = [0; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// fsck's view of one record: `Err` when it does not decode, `Ok(Some(note))` for something
/// worth a note (a last-use record without its key, an expired key), `Ok(None)` when fine.
pub(crate) async fn check_record(
    engine: &Engine,
    key: &[u8],
    value: &[u8],
) -> Result<Option<String>, StorageError> {
    let index = &engine.inner.index;
    match key {
        [b'k', 0, hash @ ..] if hash.len() == HASH_BYTES => {
            let details = decode(value)?;
            let listed = index
                .get(Cf::ApiKeys, &user_key(&details.user, &details.uuid))
                .await?;
            if listed.as_deref() != Some(hash) {
                return Err(corrupt("key not listed under its user"));
            }
            Ok(details
                .expired(index::now_ms())
                .then(|| format!("API key {} of {} is expired", details.uuid, details.user)))
        }
        [b'l', 0, hash @ ..] if hash.len() == HASH_BYTES => {
            decode_time(value)?;
            let hash = ApiKeyHash(hash.try_into().expect("length checked"));
            Ok((!index.contains(Cf::ApiKeys, &details_key(&hash)).await?)
                .then(|| "a last-use record of a revoked API key remains".to_owned()))
        }
        [b'u', 0, ..] => {
            let parts = index::split_key(key)?;
            let [_, user, uuid] = parts[..] else {
                return Err(corrupt("user record key"));
            };
            let hash: [u8; HASH_BYTES] = value.try_into().map_err(|_| corrupt("user record"))?;
            let details = index
                .get(Cf::ApiKeys, &details_key(&ApiKeyHash(hash)))
                .await?
                .ok_or_else(|| corrupt("user record without its key"))?;
            let details = decode(&details)?;
            if details.user != user || details.uuid != uuid {
                return Err(corrupt("user record names another key"));
            }
            Ok(None)
        }
        _ => Err(corrupt("unknown record kind")),
    }
}

impl Engine {
    /// Creates a key; returns it (`zak_...`, shown once) and its details. Durable when it
    /// returns. Cancel: the batch is applied whole or not at all; a dropped call's key is never
    /// seen, so it opens nothing (its owner can list and revoke it).
    pub async fn create_api_key(&self, new: NewApiKey) -> Result<(String, ApiKey), StorageError> {
        self.inner.writable()?;
        if new.user.contains('\0') {
            return Err(StorageError::Index(
                "a user name with NUL has no API keys".into(),
            ));
        }
        let secret: [u8; KEY_BYTES] = random_bytes()?;
        let uuid = uuid::Builder::from_random_bytes(random_bytes()?)
            .into_uuid()
            .to_string();
        let key = format!("{API_KEY_PREFIX}{}", hex::encode(secret));
        let hash = api_key_hash(&key).expect("a key made here is well formed");
        let details = ApiKey {
            uuid,
            user: new.user,
            label: new.label,
            scopes: new.scopes,
            created_ms: index::now_ms(),
            expires_ms: new.expires_ms,
            creator_ua: new.creator_ua,
        };
        let mut batch = Batch::default();
        batch.put(Cf::ApiKeys, details_key(&hash), encode(&details));
        batch.put(
            Cf::ApiKeys,
            user_key(&details.user, &details.uuid),
            hash.0.to_vec(),
        );
        self.inner.write_index(batch).await?;
        Ok((key, details))
    }

    /// The live key `key`: `None` when it is malformed, unknown (revoked) or expired. One
    /// point lookup, no cache: a revocation counts from the next call.
    pub async fn api_key(&self, key: &str) -> Result<Option<(ApiKeyHash, ApiKey)>, StorageError> {
        let Some(hash) = api_key_hash(key) else {
            return Ok(None);
        };
        let Some(value) = self
            .inner
            .index
            .get(Cf::ApiKeys, &details_key(&hash))
            .await?
        else {
            return Ok(None);
        };
        let details = decode(&value)?;
        Ok((!details.expired(index::now_ms())).then_some((hash, details)))
    }

    /// Every key of `user`, expired ones included, newest first, with their last use.
    pub async fn api_keys_of(&self, user: &str) -> Result<Vec<ListedApiKey>, StorageError> {
        let index = &self.inner.index;
        let mut hashes = Vec::new();
        index
            .visit(
                Cf::ApiKeys,
                &index::prefix(&["u", user]),
                None,
                |_, value| {
                    let hash: [u8; HASH_BYTES] =
                        value.try_into().map_err(|_| corrupt("user record"))?;
                    hashes.push(ApiKeyHash(hash));
                    Ok(true)
                },
            )
            .await?;
        let mut keys = Vec::with_capacity(hashes.len());
        for hash in hashes {
            // A revocation between the scan and this read: the key is gone, skip it.
            let Some(value) = index.get(Cf::ApiKeys, &details_key(&hash)).await? else {
                continue;
            };
            let last_used_ms = match index.get(Cf::ApiKeys, &last_used_key(&hash)).await? {
                Some(value) => Some(decode_time(&value)?),
                None => None,
            };
            keys.push(ListedApiKey {
                key: decode(&value)?,
                last_used_ms,
            });
        }
        keys.sort_by(|a, b| (b.key.created_ms, &b.key.uuid).cmp(&(a.key.created_ms, &a.key.uuid)));
        Ok(keys)
    }

    /// Revokes `user`'s key `uuid`; false when `user` has no such key (another user's uuid
    /// included). Deletes its three records in one batch, durable when it returns. Two
    /// concurrent calls may both answer true. Cancel: applied whole or not at all.
    pub async fn revoke_api_key(&self, user: &str, uuid: &str) -> Result<bool, StorageError> {
        self.inner.writable()?;
        let listed = user_key(user, uuid);
        let Some(value) = self.inner.index.get(Cf::ApiKeys, &listed).await? else {
            return Ok(false);
        };
        let hash: [u8; HASH_BYTES] = value
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("user record"))?;
        let hash = ApiKeyHash(hash);
        let mut batch = Batch::default();
        batch.delete(Cf::ApiKeys, details_key(&hash));
        batch.delete(Cf::ApiKeys, last_used_key(&hash));
        batch.delete(Cf::ApiKeys, listed);
        self.inner.write_index(batch).await?;
        Ok(true)
    }

    /// Every key of every user with its stored hash and last use: for copying a store
    /// (`berth migrate`), which writes each again with [`Engine::restore_api_key`]. Key order.
    pub async fn all_api_keys(&self) -> Result<Vec<(ApiKeyHash, ListedApiKey)>, StorageError> {
        let index = &self.inner.index;
        let mut details = Vec::new();
        index
            .visit(Cf::ApiKeys, b"k\0", None, |key, value| {
                let hash: [u8; HASH_BYTES] = key[2..].try_into().map_err(|_| corrupt("key"))?;
                details.push((ApiKeyHash(hash), decode(value)?));
                Ok(true)
            })
            .await?;
        let mut keys = Vec::with_capacity(details.len());
        for (hash, key) in details {
            let last_used_ms = match index.get(Cf::ApiKeys, &last_used_key(&hash)).await? {
                Some(value) => Some(decode_time(&value)?),
                None => None,
            };
            keys.push((hash, ListedApiKey { key, last_used_ms }));
        }
        Ok(keys)
    }

    /// Stores a key copied from another store under its hash (the key itself is never
    /// known, so it keeps working as it did there). False, writing nothing, when a key of that
    /// hash exists already. One synced batch. Cancel: applied whole or not at all.
    pub async fn restore_api_key(
        &self,
        hash: ApiKeyHash,
        listed: &ListedApiKey,
    ) -> Result<bool, StorageError> {
        self.inner.writable()?;
        if listed.key.user.contains('\0') || listed.key.uuid.contains('\0') {
            return Err(corrupt("a NUL in its user or uuid"));
        }
        if self
            .inner
            .index
            .contains(Cf::ApiKeys, &details_key(&hash))
            .await?
        {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.put(Cf::ApiKeys, details_key(&hash), encode(&listed.key));
        batch.put(
            Cf::ApiKeys,
            user_key(&listed.key.user, &listed.key.uuid),
            hash.0.to_vec(),
        );
        if let Some(at_ms) = listed.last_used_ms {
            batch.put(
                Cf::ApiKeys,
                last_used_key(&hash),
                at_ms.to_be_bytes().to_vec(),
            );
        }
        self.inner.write_index(batch).await?;
        Ok(true)
    }

    /// Records that the key of `hash` was used at `at_ms`, if it still exists. Only the
    /// last-use record is written, so a call that loses a race with a revocation leaves a
    /// stray last-use record and never a key. Cancel: written or not.
    pub async fn record_api_key_use(
        &self,
        hash: ApiKeyHash,
        at_ms: u64,
    ) -> Result<(), StorageError> {
        self.inner.writable()?;
        if !self
            .inner
            .index
            .contains(Cf::ApiKeys, &details_key(&hash))
            .await?
        {
            return Ok(());
        }
        let mut batch = Batch::default();
        batch.put(
            Cf::ApiKeys,
            last_used_key(&hash),
            at_ms.to_be_bytes().to_vec(),
        );
        self.inner.write_index(batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> ApiKey {
        ApiKey {
            uuid: "0b7c9c1e-4c4a-4e8f-9a53-2f1c1c1c1c1c".into(),
            user: "alice".into(),
            label: "ci".into(),
            scopes: vec!["team/**".into()],
            created_ms: 1_700_000_000_000,
            expires_ms: Some(1_700_000_100_000),
            creator_ua: "curl/8".into(),
        }
    }

    #[test]
    fn details_round_trip_and_bad_ones_are_corrupt() {
        let key = details();
        assert_eq!(decode(&encode(&key)).expect("decodes"), key);
        let never = ApiKey {
            expires_ms: None,
            scopes: Vec::new(),
            ..key.clone()
        };
        assert_eq!(decode(&encode(&never)).expect("decodes"), never);
        let other_version = String::from_utf8(encode(&key))
            .expect("json")
            .replace("\"version\":1", "\"version\":2");
        for bad in [&b""[..], b"{}", b"not json", other_version.as_bytes()] {
            assert!(
                matches!(decode(bad), Err(StorageError::Corrupt(_))),
                "{bad:?}"
            );
        }
        assert!(decode_time(&[1, 2, 3]).is_err());
        assert_eq!(decode_time(&7u64.to_be_bytes()).expect("decodes"), 7);
    }

    #[test]
    fn only_a_well_formed_key_has_a_hash() {
        let key = format!("zak_{}", "0123456789abcdef".repeat(2));
        let hash = api_key_hash(&key).expect("well formed");
        assert_ne!(&hash.0[..16], &hex::decode(&key[4..]).expect("hex")[..]);
        for bad in [
            String::new(),
            "zak_".into(),
            key[..key.len() - 1].to_owned(),
            format!("{key}0"),
            key.to_uppercase(),
            key.replace("zak_", "zot_"),
            format!("{}g", &key[..key.len() - 1]),
            format!("{}é", &key[..key.len() - 2]),
        ] {
            assert_eq!(api_key_hash(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_key_expires_at_its_millisecond() {
        let key = details();
        assert!(!key.expired(1_700_000_099_999));
        assert!(key.expired(1_700_000_100_000));
        assert!(!ApiKey {
            expires_ms: None,
            ..key
        }
        .expired(u64::MAX));
    }
}
