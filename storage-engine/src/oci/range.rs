//! The two byte-range headers of the distribution API.
//!
//! - [`ContentRange`]: `Content-Range` of an upload `PATCH`. Accepted forms:
//!   `<start>-<end>` (what the distribution spec shows) and the RFC 9110 form
//!   `bytes <start>-<end>/<total|*>`; the `bytes ` prefix and the `/<total>` suffix are each
//!   optional. `end` is inclusive, `start <= end`, `end < u64::MAX` (so [`ContentRange::len`]
//!   cannot overflow) and a numeric total must exceed `end`.
//! - [`ByteRange`]: `Range` of a blob `GET`, a single `bytes=` range only (`a-b`, `a-`, `-n`;
//!   the unit is case-insensitive). Multiple ranges, inverted ranges and other units are
//!   errors; the caller answers 416. [`ByteRange::resolve`] applies it to a blob size per
//!   RFC 9110 §14.1.2 (a suffix longer than the blob covers the whole blob; `-0` and any range
//!   starting at or past the end are unsatisfiable).
//!
//! Numbers are ASCII digits only (no sign, no whitespace inside) and must fit in `u64`.
//! Surrounding spaces/tabs (HTTP optional whitespace) are ignored.

use std::fmt;
use std::str::FromStr;

/// Why a range header was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    #[error("malformed range: {0}")]
    Syntax(&'static str),
    #[error("range position does not fit in 64 bits")]
    Overflow,
    #[error("range end {end} is before its start {start}")]
    Inverted { start: u64, end: u64 },
    #[error("only a single range is supported")]
    MultipleRanges,
    #[error("range end {end} is not below the total length {total}")]
    BeyondTotal { end: u64, total: u64 },
}

/// An upload chunk's position: bytes `start..=end_inclusive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end_inclusive: u64,
}

impl ContentRange {
    /// Number of bytes covered; at least 1.
    pub fn len(&self) -> u64 {
        self.end_inclusive - self.start + 1
    }

    /// Always false: a content range covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl FromStr for ContentRange {
    type Err = RangeError;

    fn from_str(input: &str) -> Result<ContentRange, RangeError> {
        let input = trim_optional_whitespace(input);
        if input.contains(',') {
            return Err(RangeError::MultipleRanges);
        }
        let input = input.strip_prefix("bytes ").unwrap_or(input);
        let (range, total) = match input.split_once('/') {
            Some((range, total)) => (range, Some(total)),
            None => (input, None),
        };
        let (start, end) = range
            .split_once('-')
            .ok_or(RangeError::Syntax("expected <start>-<end>"))?;
        let start = parse_position(start)?;
        let end = parse_position(end)?;
        if end < start {
            return Err(RangeError::Inverted { start, end });
        }
        if end == u64::MAX {
            return Err(RangeError::Overflow);
        }
        match total {
            None | Some("*") => {}
            Some(total) => {
                let total = parse_position(total)?;
                if end >= total {
                    return Err(RangeError::BeyondTotal { end, total });
                }
            }
        }
        Ok(ContentRange {
            start,
            end_inclusive: end,
        })
    }
}

impl fmt::Display for ContentRange {
    /// The distribution-spec form `<start>-<end>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end_inclusive)
    }
}

/// A single `Range: bytes=...` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b`, `a <= b`, both inclusive.
    FromTo(u64, u64),
    /// `bytes=a-`: from `a` to the end.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The inclusive byte positions to send for a blob of `size` bytes, or `None` when the
    /// range is unsatisfiable (answer 416 with `Content-Range: bytes */<size>`).
    pub fn resolve(&self, size: u64) -> Option<(u64, u64)> {
        let last = size.checked_sub(1)?;
        match *self {
            ByteRange::FromTo(start, end) if start <= last => Some((start, end.min(last))),
            ByteRange::From(start) if start <= last => Some((start, last)),
            ByteRange::Suffix(length) if length > 0 => Some((size - length.min(size), last)),
            _ => None,
        }
    }
}

impl FromStr for ByteRange {
    type Err = RangeError;

    fn from_str(input: &str) -> Result<ByteRange, RangeError> {
        let input = trim_optional_whitespace(input);
        let (unit, spec) = input
            .split_once('=')
            .ok_or(RangeError::Syntax("expected bytes=<range>"))?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return Err(RangeError::Syntax("the only range unit is bytes"));
        }
        if spec.contains(',') {
            return Err(RangeError::MultipleRanges);
        }
        let (start, end) = spec.split_once('-').ok_or(RangeError::Syntax(
            "expected <start>-<end>, <start>- or -<length>",
        ))?;
        match (start.is_empty(), end.is_empty()) {
            (true, true) => Err(RangeError::Syntax("empty range")),
            (true, false) => Ok(ByteRange::Suffix(parse_position(end)?)),
            (false, true) => Ok(ByteRange::From(parse_position(start)?)),
            (false, false) => {
                let start = parse_position(start)?;
                let end = parse_position(end)?;
                if end < start {
                    return Err(RangeError::Inverted { start, end });
                }
                Ok(ByteRange::FromTo(start, end))
            }
        }
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRange::FromTo(start, end) => write!(f, "bytes={start}-{end}"),
            ByteRange::From(start) => write!(f, "bytes={start}-"),
            ByteRange::Suffix(length) => write!(f, "bytes=-{length}"),
        }
    }
}

fn trim_optional_whitespace(input: &str) -> &str {
    input.trim_matches([' ', '\t'])
}

/// Non-empty ASCII digits fitting in `u64`. `u64::from_str` alone would accept a `+` sign.
fn parse_position(digits: &str) -> Result<u64, RangeError> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(RangeError::Syntax(
            "positions are unsigned decimal integers",
        ));
    }
    digits.parse().map_err(|_| RangeError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_content_ranges() {
        for (input, start, end) in [
            ("0-0", 0, 0),
            ("0-9", 0, 9),
            ("10-19", 10, 19),
            ("bytes 0-9/10", 0, 9),
            ("bytes 5-9/*", 5, 9),
            ("bytes 5-9", 5, 9),
            (" 1-2\t", 1, 2),
            ("007-08", 7, 8),
            ("0-18446744073709551614", 0, u64::MAX - 1),
        ] {
            let range: ContentRange = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((range.start, range.end_inclusive), (start, end), "{input}");
            assert_eq!(range.len(), end - start + 1);
        }
    }

    #[test]
    fn rejects_bad_content_ranges() {
        let huge = "1".repeat(4096);
        for input in [
            "",
            "20-10",
            "-5",
            "5-",
            "a-b",
            "0-18446744073709551616",
            "0-18446744073709551615",
            "0-1,2-3",
            "bytes=0-9",
            "bytes 0-9/9",
            "bytes 0-9/x",
            "bytes  0-9",
            "+1-2",
            "1-+2",
            "1 -2",
            "0x1-0x2",
            "1-2-3",
            "１-２",
            &huge,
        ] {
            assert!(input.parse::<ContentRange>().is_err(), "{input:?}");
        }
    }

    #[test]
    fn parses_byte_ranges() {
        for (input, expected) in [
            ("bytes=0-9", ByteRange::FromTo(0, 9)),
            ("BYTES=5-5", ByteRange::FromTo(5, 5)),
            ("bytes=5-", ByteRange::From(5)),
            ("bytes=-7", ByteRange::Suffix(7)),
            ("bytes=-0", ByteRange::Suffix(0)),
        ] {
            assert_eq!(input.parse::<ByteRange>(), Ok(expected), "{input}");
            assert_eq!(expected.to_string().parse::<ByteRange>(), Ok(expected));
        }
    }

    #[test]
    fn rejects_bad_byte_ranges() {
        for input in [
            "",
            "bytes=",
            "bytes=-",
            "bytes=9-5",
            "bytes=0-1,2-3",
            "bytes=0-1, 5-",
            "items=0-1",
            "bytes 0-1",
            "0-1",
            "bytes=a-",
            "bytes=--1",
            "bytes=0-18446744073709551616",
            "bytes=1-2-3",
        ] {
            assert!(input.parse::<ByteRange>().is_err(), "{input:?}");
        }
    }

    #[test]
    fn resolves_against_a_size() {
        for (range, size, expected) in [
            (ByteRange::FromTo(0, 9), 100, Some((0, 9))),
            (ByteRange::FromTo(90, 200), 100, Some((90, 99))),
            (ByteRange::FromTo(100, 200), 100, None),
            (ByteRange::From(99), 100, Some((99, 99))),
            (ByteRange::From(100), 100, None),
            (ByteRange::Suffix(10), 100, Some((90, 99))),
            (ByteRange::Suffix(1000), 100, Some((0, 99))),
            (ByteRange::Suffix(0), 100, None),
            (ByteRange::From(0), 0, None),
            (ByteRange::Suffix(5), 0, None),
            (
                ByteRange::FromTo(0, u64::MAX),
                u64::MAX,
                Some((0, u64::MAX - 1)),
            ),
        ] {
            assert_eq!(range.resolve(size), expected, "{range:?} of {size}");
        }
    }

    proptest! {
        #[test]
        fn content_range_round_trips(start in any::<u64>(), length in 1..u64::MAX) {
            let end = start.saturating_add(length - 1).min(u64::MAX - 1);
            prop_assume!(start <= end);
            let range = ContentRange { start, end_inclusive: end };
            prop_assert_eq!(range.to_string().parse::<ContentRange>(), Ok(range));
            let rfc_form = format!("bytes {start}-{end}/*");
            prop_assert_eq!(rfc_form.parse::<ContentRange>(), Ok(range));
        }

        #[test]
        fn resolved_ranges_lie_inside_the_blob(input in "bytes=[0-9]{0,3}-[0-9]{0,3}", size in 0u64..2000) {
            if let Ok(range) = input.parse::<ByteRange>() {
                prop_assert_eq!(range.to_string().parse::<ByteRange>(), Ok(range));
                if let Some((start, end)) = range.resolve(size) {
                    prop_assert!(start <= end && end < size);
                }
            }
        }
    }
}
