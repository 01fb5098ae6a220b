//! Lenient base64 decoding for signature formats whose producers disagree on padding and
//! alphabet; the decoded size is bounded before decoding.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use crate::MAX_ENVELOPE_BYTES;

const INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_INDIFFERENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, INDIFFERENT);
const URL_SAFE_INDIFFERENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, INDIFFERENT);

/// Standard base64 with or without padding; None when malformed or too large.
pub(crate) fn decode_standard(text: &str) -> Option<Vec<u8>> {
    if text.len() > MAX_ENVELOPE_BYTES * 2 {
        return None;
    }
    STANDARD_INDIFFERENT.decode(text.trim()).ok()
}

/// Base64url with or without padding (JWS); None when malformed or too large.
pub(crate) fn decode_url_safe(text: &str) -> Option<Vec<u8>> {
    if text.len() > MAX_ENVELOPE_BYTES * 2 {
        return None;
    }
    URL_SAFE_INDIFFERENT.decode(text).ok()
}

/// Either alphabet, padded or not (protobuf JSON accepts both).
pub(crate) fn decode_any(text: &str) -> Option<Vec<u8>> {
    decode_standard(text).or_else(|| decode_url_safe(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_missing_padding_and_either_alphabet() {
        assert_eq!(decode_standard("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_standard("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_url_safe("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode_any("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode_standard("!!"), None);
    }
}
