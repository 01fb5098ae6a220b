//! Bearer tokens (`http.auth.bearer`): placeholder until the token verifier lands.

use std::path::Path;

/// The keys that verify tokens.
pub struct TokenKeys;

impl TokenKeys {
    /// Reads the `cert` file.
    pub fn load(path: &Path) -> Result<TokenKeys, String> {
        std::fs::read(path)
            .map(|_| TokenKeys)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))
    }
}
