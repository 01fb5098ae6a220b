//! Go-style duration strings, as zot's config files write them (`"30s"`, `"1h30m"`, `"500ms"`,
//! `"1.5h"`, `"0"`).
//!
//! Rules: the grammar is Go's `time.ParseDuration` (`[+-]?(<decimal><unit>)+`, units `ns`, `us`,
//! `µs`, `μs`, `ms`, `s`, `m`, `h`; a bare `0` is allowed), so every value zot accepts parses
//! here to the same number of nanoseconds. Negative durations are rejected because no berth
//! setting has a meaning for them. Values above Go's limit (`i64::MAX` nanoseconds, about 292
//! years) are rejected, as Go does. `humantime` is not used: it has no fractions (`"1.5h"`) and
//! reads `M` as months.

use std::time::Duration;

/// Largest value Go's `time.Duration` can hold, in nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string. The error is a short reason, without the key path.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("expected a duration like \"30s\", \"1h30m\" or \"500ms\", got {text:?}");
    let mut rest = text;
    let mut negative = false;
    if let Some(stripped) = rest.strip_prefix('-') {
        negative = true;
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let integer_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (integer_digits, after_integer) = rest.split_at(integer_len);
        let (fraction_digits, after_number) = match after_integer.strip_prefix('.') {
            Some(after_dot) => {
                let fraction_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(fraction_len)
            }
            None => ("", after_integer),
        };
        if integer_digits.is_empty() && fraction_digits.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_number
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(after_number.len(), |(index, _)| index);
        let (unit, after_unit) = after_number.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => {
                return Err(format!(
                    "missing unit in duration {text:?} (write e.g. \"30s\")"
                ))
            }
            other => {
                return Err(format!(
                    "unknown unit {other:?} in duration {text:?} (units: ns, us, ms, s, m, h)"
                ))
            }
        };
        let out_of_range = || format!("duration {text:?} is out of range");
        let mut integer: u128 = 0;
        for digit in integer_digits.bytes() {
            integer = integer * 10 + u128::from(digit - b'0');
            if integer > MAX_NANOS {
                return Err(out_of_range());
            }
        }
        // Like Go, digits past the precision that can matter are dropped, not rounded.
        let mut fraction: u128 = 0;
        let mut scale: u128 = 1;
        for digit in fraction_digits.bytes().take(24) {
            fraction = fraction * 10 + u128::from(digit - b'0');
            scale *= 10;
        }
        let component = integer
            .checked_mul(unit_nanos)
            .and_then(|whole| whole.checked_add(fraction * unit_nanos / scale))
            .ok_or_else(out_of_range)?;
        total = total.checked_add(component).ok_or_else(out_of_range)?;
        if total > MAX_NANOS {
            return Err(out_of_range());
        }
        rest = after_unit;
    }
    if negative && total != 0 {
        return Err(format!("duration {text:?} must not be negative"));
    }
    let nanos = u64::try_from(total).map_err(|_| format!("duration {text:?} is out of range"))?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_forms() {
        let table: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h30m15s", Duration::from_secs(5415)),
            ("720h", Duration::from_secs(720 * 3600)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("10us", Duration::from_micros(10)),
            ("10\u{b5}s", Duration::from_micros(10)),
            ("10\u{3bc}s", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1m0.5s", Duration::from_millis(60_500)),
            ("0.000000001s", Duration::from_nanos(1)),
            (
                "2562047h47m16.854775807s",
                Duration::from_nanos(i64::MAX as u64),
            ),
        ];
        for (text, expected) in table {
            assert_eq!(parse_go_duration(text), Ok(*expected), "parsing {text:?}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "",
            "s",
            "1",
            "30",
            ".s",
            "1.5",
            "1d",
            "1w",
            "1M",
            "1y",
            "1 h",
            " 1h",
            "1h ",
            "1H",
            "h1",
            "1hh",
            "--1s",
            "1e3s",
            "2562047h47m16.854775808s",
            "9999999999999999999h",
        ] {
            assert!(
                parse_go_duration(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn rejects_negative() {
        let error = parse_go_duration("-1s").unwrap_err();
        assert!(error.contains("negative"), "{error}");
    }

    #[test]
    fn error_names_the_input() {
        let error = parse_go_duration("1d").unwrap_err();
        assert!(error.contains("\"d\""), "{error}");
        assert!(error.contains("1d"), "{error}");
    }
}
