//! A small PromQL scanner for the dashboard test: which metric names an expression reads.
//!
//! Owns: [`metric_names`] (identifiers that are neither functions, keywords, label names, nor
//! inside strings, `{...}` matchers or `[...]` ranges), the dashboard's `namespace` variable
//! ([`substitute_namespace`]) and Grafana's built-in variables ([`with_grafana_variables`]).
//!
//! Rules: it never guesses. Unbalanced brackets, unterminated strings and unknown Grafana
//! variables are errors; whether the rest is valid PromQL is promtool's job (see the
//! `dashboard_expressions_parse_with_promtool` test).

use std::collections::BTreeSet;

/// Grafana's built-in variables an expression may use (outside a range selector too).
const GRAFANA_VARIABLES: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
];

/// Words after which a parenthesised list holds label names, not expressions.
const LABEL_LIST_MODIFIERS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// PromQL words that are not metric names even when no `(` follows them: binary operators,
/// modifiers, literals, and the aggregation operators (written `sum by (x) (...)`).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
];

/// Replaces the dashboard's `namespace` variable (`${namespace}`, or `$namespace` when no
/// name character follows: Grafana reads `$namespace_info` as a variable `namespace_info`).
pub fn substitute_namespace(expr: &str, namespace: &str) -> String {
    let expr = expr.replace("${namespace}", namespace);
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr.as_str();
    while let Some(at) = rest.find("$namespace") {
        let after = &rest[at + "$namespace".len()..];
        out.push_str(&rest[..at]);
        if after.bytes().next().is_some_and(is_word_byte) {
            out.push_str("$namespace");
        } else {
            out.push_str(namespace);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn is_identifier_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b':'
}

fn is_identifier_byte(byte: u8) -> bool {
    is_identifier_start(byte) || byte.is_ascii_digit()
}

/// The metric names `expr` reads, with the dashboard's namespace variable set to `namespace`.
/// Skips string literals, `{...}` label matchers, `[...]` ranges and subqueries, label lists
/// after `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`, numbers and durations,
/// function calls (a word followed by `(`) and PromQL keywords. Grafana's built-in variables
/// are allowed; any other `$variable` is an error.
pub fn metric_names(expr: &str, namespace: &str) -> Result<BTreeSet<String>, String> {
    let expr = substitute_namespace(expr, namespace);
    let bytes = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut open_parens = 0usize;
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        at = match byte {
            b'"' | b'\'' | b'`' => skip_string(bytes, at)?,
            b'#' => bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |n| at + n),
            b'{' => skip_group(bytes, at, b'{', b'}')?,
            b'[' => skip_group(bytes, at, b'[', b']')?,
            b'(' => {
                open_parens += 1;
                at + 1
            }
            b')' => {
                open_parens = open_parens
                    .checked_sub(1)
                    .ok_or_else(|| format!("unmatched `)` at byte {at}"))?;
                at + 1
            }
            b'}' | b']' => return Err(format!("unmatched `{}` at byte {at}", char::from(byte))),
            b'$' => {
                let (variable, end) = read_variable(&expr, at)?;
                if !GRAFANA_VARIABLES.contains(&variable) {
                    return Err(format!("unknown Grafana variable `${variable}`"));
                }
                end
            }
            b'0'..=b'9' => skip_number(bytes, at),
            b'.' if bytes.get(at + 1).is_some_and(u8::is_ascii_digit) => skip_number(bytes, at),
            _ if is_identifier_start(byte) => {
                let end = at
                    + bytes[at..]
                        .iter()
                        .position(|&b| !is_identifier_byte(b))
                        .unwrap_or(bytes.len() - at);
                let word = &expr[at..end];
                let lower = word.to_ascii_lowercase();
                let next = end
                    + bytes[end..]
                        .iter()
                        .position(|b| !b.is_ascii_whitespace())
                        .unwrap_or(bytes.len() - end);
                let call_follows = bytes.get(next) == Some(&b'(');
                if LABEL_LIST_MODIFIERS.contains(&lower.as_str()) {
                    if call_follows {
                        skip_group(bytes, next, b'(', b')')?
                    } else {
                        end
                    }
                } else {
                    if !call_follows && !KEYWORDS.contains(&lower.as_str()) {
                        names.insert(word.to_owned());
                    }
                    end
                }
            }
            _ => at + 1,
        };
    }
    if open_parens != 0 {
        return Err(format!("{open_parens} unclosed `(`"));
    }
    Ok(names)
}

/// Index just past the string literal opening at `start` (`"`/`'` with escapes, raw `` ` ``).
fn skip_string(bytes: &[u8], start: usize) -> Result<usize, String> {
    let quote = bytes[start];
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if quote != b'`' => at += 2,
            b if b == quote => return Ok(at + 1),
            _ => at += 1,
        }
    }
    Err(format!("unterminated string literal at byte {start}"))
}

/// Index just past the `close` matching the `open` at `start`; strings inside are skipped.
fn skip_group(bytes: &[u8], start: usize, open: u8, close: u8) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut at = start;
    while at < bytes.len() {
        match bytes[at] {
            b'"' | b'\'' | b'`' => {
                at = skip_string(bytes, at)?;
                continue;
            }
            b if b == open => depth += 1,
            b if b == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
    Err(format!("unbalanced `{}` at byte {start}", char::from(open)))
}

/// A number or duration (`0.99`, `1e-9`, `0x1f`, `5m`, `1h30m`): index just past it.
fn skip_number(bytes: &[u8], start: usize) -> usize {
    let mut at = start;
    while at < bytes.len() {
        let byte = bytes[at];
        let part_of_number = byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'_';
        // The sign of a decimal exponent (`1e-9`); `0x1e-5` is a subtraction.
        let exponent_sign = matches!(byte, b'+' | b'-')
            && matches!(bytes[at - 1], b'e' | b'E')
            && bytes[start..at - 1]
                .iter()
                .all(|b| b.is_ascii_digit() || *b == b'.');
        if !(part_of_number || exponent_sign) {
            break;
        }
        at += 1;
    }
    at
}

/// The Grafana variable at `start` (`$name` or `${name}`, `${name:format}`) and the index just
/// past it.
fn read_variable(expr: &str, start: usize) -> Result<(&str, usize), String> {
    let rest = &expr[start + 1..];
    if let Some(braced) = rest.strip_prefix('{') {
        let close = braced
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` at byte {start}"))?;
        let name = braced[..close].split(':').next().unwrap_or_default();
        return Ok((name, start + 2 + close + 1));
    }
    let len = rest
        .bytes()
        .position(|b| !is_word_byte(b))
        .unwrap_or(rest.len());
    if len == 0 {
        return Err(format!("`$` without a variable name at byte {start}"));
    }
    Ok((&rest[..len], start + 1 + len))
}

/// `expr` with Grafana's built-in variables replaced by values Grafana could choose.
pub fn with_grafana_variables(expr: &str) -> String {
    // Longest names first: `$__range_s` must not become `1h_s`.
    [
        ("$__rate_interval", "1m"),
        ("$__interval_ms", "15000"),
        ("$__interval", "15s"),
        ("$__range_ms", "3600000"),
        ("$__range_s", "3600"),
        ("$__range", "1h"),
    ]
    .iter()
    .fold(expr.to_owned(), |expr, (variable, value)| {
        expr.replace(&format!("${{{}}}", &variable[1..]), value)
            .replace(variable, value)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::metric_names;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn extractor_names_only_metrics() {
        let cases: &[(&str, &[&str])] = &[
            (
                "sum by (code) (rate(${namespace}_http_requests_total[$__rate_interval]))",
                &["zot_http_requests_total"],
            ),
            (
                "histogram_quantile(0.99, sum by (le, method) \
                 (rate(${namespace}_http_method_latency_seconds_bucket[5m])))",
                &["zot_http_method_latency_seconds_bucket"],
            ),
            (
                "sum(rate(x_total{code=~\"5..\", method!=\"GET\"}[5m])) / \
                 clamp_min(sum(rate(x_total[5m])), 1e-9)",
                &["x_total"],
            ),
            (
                "topk(10, sum by (repo) (rate(a_sum[$__rate_interval])) / \
                 sum by (repo) (rate(a_count[$__rate_interval])))",
                &["a_sum", "a_count"],
            ),
            (
                "time() - process_start_time_seconds",
                &["process_start_time_seconds"],
            ),
            (
                "a and on (instance, job) b offset 5m or vector(0)",
                &["a", "b"],
            ),
            ("sum(x) without (le) > bool 0.5", &["x"]),
            ("x - 0x1e-y + 2.5E+3", &["x", "y"]),
            (
                "max(up) by (job) * on (job) group_left (version) build_info",
                &["up", "build_info"],
            ),
            (
                "label_replace(up, \"dst\", \"$1\", \"src\", \"(.*)\")",
                &["up"],
            ),
            ("foo:bar:rate5m @ 1609746000", &["foo:bar:rate5m"]),
            ("max_over_time(deriv(x[1h:5m])[$__range:])", &["x"]),
            ("SUM BY (le) (y) UNLESS z", &["y", "z"]),
            (
                "count_values(\"version\", build_info) + Inf",
                &["build_info"],
            ),
        ];
        for (expr, expected) in cases {
            assert_eq!(
                metric_names(expr, "zot").expect(expr),
                names(expected),
                "{expr}"
            );
        }
    }

    #[test]
    fn extractor_substitutes_the_namespace_and_rejects_unknown_variables() {
        assert_eq!(
            metric_names("${namespace}_info + $namespace", "berth").expect("valid"),
            names(&["berth_info", "berth"])
        );
        assert_eq!(
            metric_names("rate(x[$__interval]) * $__range_s", "zot").expect("valid"),
            names(&["x"])
        );
        // Grafana reads `$namespace_info` as a variable `namespace_info`: an error, not a name.
        let error = metric_names("$namespace_info", "zot").expect_err("unknown variable");
        assert!(error.contains("`$namespace_info`"), "{error}");
        assert!(metric_names("rate(x{job=\"$job\"}[5m]) * $job", "zot").is_err());
        assert!(metric_names("sum(rate(x[5m])", "zot").is_err());
        assert!(metric_names("sum(x))", "zot").is_err());
        assert!(metric_names("x[5m]]", "zot").is_err());
        assert!(metric_names("x{code=\"5..}", "zot").is_err());
    }
}
