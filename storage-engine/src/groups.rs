//! Users' groups as their identity provider gave them at their last login (LDAP's
//! `userGroupAttribute` now), in the `user_groups` family, so that a session or an API key
//! used after a restart keeps the groups `accessControl` grants by (zot keeps them in its
//! MetaDB for the same reason).
//!
//! Rules:
//! - Key: the user name (UTF-8). Value: `version u8 = 1`, then the groups as a JSON array of
//!   strings. A value that does not decode is `StorageError::Corrupt`.
//! - A login replaces the whole list (never merges: a group left in the directory is gone
//!   at the next login); an empty list deletes the record. Writes are ordinary (not synced):
//!   the next login writes them again, and nothing acknowledged depends on them.
use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{Batch, Cf};

const VALUE_VERSION: u8 = 1;
/// Most groups kept per user; more are cut (a directory that returns thousands is
/// misconfigured, and every request of the user would carry them).
pub const MAX_GROUPS: usize = 1024;

fn encode(groups: &[String]) -> Vec<u8> {
    let mut value = vec![VALUE_VERSION];
    value.extend(serde_json::to_vec(groups).expect("strings serialise"));
    value
}

fn decode(value: &[u8]) -> Result<Vec<String>, StorageError> {
    let corrupt = || StorageError::Corrupt("bad user groups record".into());
    match value.split_first() {
        Some((&VALUE_VERSION, json)) => serde_json::from_slice(json).map_err(|_| corrupt()),
        _ => Err(corrupt()),
    }
}

/// fsck's view of one record.
pub(crate) fn check_record(key: &[u8], value: &[u8]) -> Result<(), StorageError> {
    std::str::from_utf8(key)
        .map_err(|_| StorageError::Corrupt("user groups key is not UTF-8".into()))?;
    decode(value).map(|_| ())
}

impl Engine {
    /// Replaces `user`'s groups (at most [`MAX_GROUPS`]; none deletes the record): one
    /// unsynced write, applied whole or not at all.
    pub async fn set_user_groups(&self, user: &str, groups: &[String]) -> Result<(), StorageError> {
        self.inner.writable()?;
        let mut batch = Batch::default();
        match groups.is_empty() {
            true => batch.delete(Cf::UserGroups, user.as_bytes().to_vec()),
            false => batch.put(
                Cf::UserGroups,
                user.as_bytes().to_vec(),
                encode(&groups[..groups.len().min(MAX_GROUPS)]),
            ),
        }
        self.inner.index.write(batch, false).await
    }

    /// `user`'s groups from their last login (empty when none). One point lookup.
    pub async fn user_groups(&self, user: &str) -> Result<Vec<String>, StorageError> {
        match self
            .inner
            .index
            .get(Cf::UserGroups, user.as_bytes())
            .await?
        {
            Some(value) => decode(&value),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_round_trips_and_a_bad_record_is_corrupt() {
        let groups = vec![
            "cn=devs,ou=groups,dc=example,dc=org".to_owned(),
            "devs".to_owned(),
        ];
        assert_eq!(decode(&encode(&groups)).expect("decodes"), groups);
        assert_eq!(decode(&encode(&[])).expect("decodes"), Vec::<String>::new());
        for bad in [&b""[..], b"\x02[]", b"\x01{", b"\x01[1]"] {
            assert!(
                matches!(decode(bad), Err(StorageError::Corrupt(_))),
                "{bad:?}"
            );
        }
        assert!(check_record(b"\xff", &encode(&groups)).is_err());
        assert!(check_record(b"alice", &encode(&groups)).is_ok());
    }
}
