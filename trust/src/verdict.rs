//! The verdict every verifier returns, what it is judged against, and the trust store.
//!
//! A verdict is either trusted, with the signer as author, or untrusted, with a reason; the
//! constructors here are the only way verifiers build one, so the two never mix.

use std::fmt;

use crate::certificate::TrustedCertificate;
use crate::keys::CosignKey;

/// The signing tool whose format a signature is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tool {
    Cosign,
    Notation,
}

impl fmt::Display for Tool {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Tool::Cosign => "cosign",
            Tool::Notation => "notation",
        })
    }
}

/// Everything a user uploaded that signatures are judged against.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    pub cosign: Vec<CosignKey>,
    pub certificates: Vec<TrustedCertificate>,
}

/// What was signed: the manifest the signature is for.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// `sha256:<hex>`.
    pub digest: &'a str,
    pub media_type: &'a str,
    pub size: u64,
}

/// The outcome of verifying one signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub tool: Tool,
    pub trusted: bool,
    /// Who signed, only when trusted: cosign: the matching key's `pem()`; notation: the
    /// signing (leaf) certificate's `subject()`. Empty otherwise.
    pub author: String,
    /// Why it is not trusted, one short sentence; empty when trusted.
    pub reason: String,
    /// When a trusted verdict lapses by itself (unix seconds): the earliest notAfter of the
    /// chain, or the signature's expiry if earlier. None when it never does or untrusted.
    pub expires_unix: Option<i64>,
}

impl Verdict {
    pub(crate) fn trusted(tool: Tool, author: String, expires_unix: Option<i64>) -> Verdict {
        Verdict {
            tool,
            trusted: true,
            author,
            reason: String::new(),
            expires_unix,
        }
    }

    pub(crate) fn untrusted(tool: Tool, reason: impl Into<String>) -> Verdict {
        Verdict {
            tool,
            trusted: false,
            author: String::new(),
            reason: reason.into(),
            expires_unix: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_print_as_their_command_names() {
        assert_eq!(Tool::Cosign.to_string(), "cosign");
        assert_eq!(Tool::Notation.to_string(), "notation");
    }

    #[test]
    fn an_untrusted_verdict_has_no_author_and_no_expiry() {
        let verdict = Verdict::untrusted(Tool::Cosign, "no key");
        assert!(!verdict.trusted);
        assert_eq!(verdict.author, "");
        assert_eq!(verdict.expires_unix, None);
    }
}
