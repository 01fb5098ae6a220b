//! userprefs: each user's starred and bookmarked repositories, and each repository's star
//! count, in the `user_prefs` family.
//!
//! Rules: a user's key is the kind (`s` star, `b` bookmark), the user name's length (u32,
//! big-endian), the name, then the repository: any user name fits, and one user's stars are
//! one prefix scan. `c` + repository -> star count u64. A toggle flips the user's key and moves the count in one synced batch, under the
//! repository lock, so two toggles of one repository never lose a count.
use crate::engine::Engine;
use crate::error::StorageError;
use crate::index::{Batch, Cf};
use crate::oci::RepoName;

/// What a user keeps of a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pref {
    Star,
    Bookmark,
}

impl Pref {
    fn code(self) -> u8 {
        match self {
            Pref::Star => b's',
            Pref::Bookmark => b'b',
        }
    }
}

fn user_key(user: &str, pref: Pref, repo: &str) -> Vec<u8> {
    let length = u32::try_from(user.len()).unwrap_or(u32::MAX);
    let mut key = Vec::with_capacity(5 + user.len() + repo.len());
    key.push(pref.code());
    key.extend_from_slice(&length.to_be_bytes());
    key.extend_from_slice(user.as_bytes());
    key.extend_from_slice(repo.as_bytes());
    key
}

fn count_key(repo: &str) -> Vec<u8> {
    let mut key = vec![b'c'];
    key.extend_from_slice(repo.as_bytes());
    key
}

fn decode_count(value: &[u8]) -> Result<u64, StorageError> {
    value
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt("bad star count".into()))
}

impl Engine {
    /// Flips `pref` of `repo` for `user`; returns whether it is now set. Durable when it
    /// returns. Cancel: applied whole or not at all.
    pub async fn toggle_pref(
        &self,
        user: &str,
        repo: &RepoName,
        pref: Pref,
    ) -> Result<bool, StorageError> {
        self.inner.writable()?;
        let key = user_key(user, pref, repo.as_str());
        let inner = &self.inner;
        let guard = inner.lock_repo(repo).await?;
        let set = !inner.index.contains(Cf::UserPrefs, &key).await?;
        let mut batch = Batch::default();
        match set {
            true => batch.put(Cf::UserPrefs, key, Vec::new()),
            false => batch.delete(Cf::UserPrefs, key),
        }
        if pref == Pref::Star {
            let stars = self.star_count(repo).await?;
            let stars = match set {
                true => stars + 1,
                false => stars.saturating_sub(1),
            };
            batch.put(
                Cf::UserPrefs,
                count_key(repo.as_str()),
                stars.to_be_bytes().to_vec(),
            );
        }
        inner.write_held(batch, &guard).await?;
        Ok(set)
    }

    /// Whether `user` has `pref` set on `repo`.
    pub async fn has_pref(
        &self,
        user: &str,
        repo: &RepoName,
        pref: Pref,
    ) -> Result<bool, StorageError> {
        let key = user_key(user, pref, repo.as_str());
        self.inner.index.contains(Cf::UserPrefs, &key).await
    }

    /// The repositories `user` has `pref` set on, in name order.
    pub async fn prefs_of(&self, user: &str, pref: Pref) -> Result<Vec<RepoName>, StorageError> {
        let prefix = user_key(user, pref, "");
        let mut repos = Vec::new();
        self.inner
            .index
            .visit(Cf::UserPrefs, &prefix, None, |key, _| {
                let name = String::from_utf8_lossy(&key[prefix.len()..]);
                repos.push(name.parse().map_err(|_| {
                    StorageError::Corrupt(format!("bad repository in a preference: {name:?}"))
                })?);
                Ok(true)
            })
            .await?;
        Ok(repos)
    }

    /// Every user's every preference, as (user, kind, repository): for copying a store
    /// (`berth migrate`), which sets each again with [`Engine::toggle_pref`].
    pub async fn all_prefs(&self) -> Result<Vec<(String, Pref, RepoName)>, StorageError> {
        let mut found = Vec::new();
        for pref in [Pref::Star, Pref::Bookmark] {
            self.inner
                .index
                .visit(Cf::UserPrefs, &[pref.code()], None, |key, _| {
                    let bad = || StorageError::Corrupt("bad user preference key".into());
                    let length: [u8; 4] = key
                        .get(1..5)
                        .ok_or_else(bad)?
                        .try_into()
                        .map_err(|_| bad())?;
                    let end = 5 + u32::from_be_bytes(length) as usize;
                    let user = key.get(5..end).ok_or_else(bad)?;
                    let user = std::str::from_utf8(user).map_err(|_| bad())?;
                    let repo = std::str::from_utf8(&key[end..]).map_err(|_| bad())?;
                    found.push((user.to_owned(), pref, repo.parse().map_err(|_| bad())?));
                    Ok(true)
                })
                .await?;
        }
        Ok(found)
    }

    /// How many users starred `repo`.
    /// `StarCount` of every starred repository (one scan of the count records; a repository
    /// missing here has 0): for sorting a list by stars.
    pub async fn star_counts(
        &self,
    ) -> Result<std::collections::HashMap<String, u64>, StorageError> {
        let mut counts = std::collections::HashMap::new();
        self.inner
            .index
            .visit(Cf::UserPrefs, b"c", None, |key, value| {
                let count = decode_count(value)?;
                if count > 0 {
                    counts.insert(String::from_utf8_lossy(&key[1..]).into_owned(), count);
                }
                Ok(true)
            })
            .await?;
        Ok(counts)
    }

    pub async fn star_count(&self, repo: &RepoName) -> Result<u64, StorageError> {
        match self
            .inner
            .index
            .get(Cf::UserPrefs, &count_key(repo.as_str()))
            .await?
        {
            Some(value) => decode_count(&value),
            None => Ok(0),
        }
    }
}
