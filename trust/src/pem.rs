//! A strict PEM reader: only `-----BEGIN L-----` / base64 / `-----END L-----` blocks with
//! whitespace between them. Any other text is refused rather than skipped, so an upload is
//! exactly what it looks like.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::keys::KeyError;
use crate::MAX_PEM_BYTES;

/// One decoded PEM block.
pub(crate) struct PemBlock {
    pub label: String,
    pub contents: Vec<u8>,
}

/// Splits `text` into its PEM blocks; an empty text or any stray line is [`KeyError::NotPem`].
pub(crate) fn parse_blocks(text: &[u8]) -> Result<Vec<PemBlock>, KeyError> {
    if text.len() > MAX_PEM_BYTES {
        return Err(KeyError::TooLarge);
    }
    let text = std::str::from_utf8(text).map_err(|_| KeyError::NotPem)?;
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    while let Some(line) = lines.next() {
        let label = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .ok_or(KeyError::NotPem)?;
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        loop {
            let line = lines.next().ok_or(KeyError::NotPem)?;
            if line == end {
                break;
            }
            if line.starts_with("-----") || line.contains(':') {
                // A different END line, a nested BEGIN or RFC 1421 headers (encrypted keys).
                return Err(KeyError::NotPem);
            }
            body.push_str(line);
        }
        let contents = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| KeyError::NotPem)?;
        if contents.is_empty() {
            return Err(KeyError::NotPem);
        }
        blocks.push(PemBlock {
            label: label.to_string(),
            contents,
        });
    }
    if blocks.is_empty() {
        return Err(KeyError::NotPem);
    }
    Ok(blocks)
}

/// Encodes `contents` as one PEM block with 64-character lines and a final newline.
pub(crate) fn encode_block(label: &str, contents: &[u8]) -> String {
    let body = STANDARD.encode(contents);
    let mut text = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_block() {
        let text = encode_block("PUBLIC KEY", &[1u8; 100]);
        let blocks = parse_blocks(text.as_bytes()).expect("valid PEM");
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "PUBLIC KEY");
        assert_eq!(blocks[0].contents, vec![1u8; 100]);
    }

    #[test]
    fn refuses_what_is_not_only_pem() {
        let block = encode_block("CERTIFICATE", b"x");
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"   \n".to_vec(),
            b"garbage".to_vec(),
            format!("hello\n{block}").into_bytes(),
            format!("{block}trailing").into_bytes(),
            b"-----BEGIN X-----\nAAAA\n".to_vec(),
            b"-----BEGIN X-----\n!!!!\n-----END X-----\n".to_vec(),
            b"-----BEGIN X-----\nAAAA\n-----END Y-----\n".to_vec(),
            b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END X-----\n".to_vec(),
            vec![0xff, 0xfe],
        ];
        for case in cases {
            assert!(
                parse_blocks(&case).is_err(),
                "{:?}",
                String::from_utf8_lossy(&case)
            );
        }
    }

    #[test]
    fn reads_several_blocks() {
        let text = format!("{}\n\n{}", encode_block("A", b"1"), encode_block("B", b"2"));
        let blocks = parse_blocks(text.as_bytes()).expect("valid PEM");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].label, "B");
    }
}
