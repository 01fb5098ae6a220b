//! `http.ratelimit`, typed: zot's `rate` (requests per second over every request) and
//! `methods[]` (`{method, rate}`: requests per second of one HTTP method).
//!
//! Rules: rates are whole requests per second, 1 to [`MAX_RATE`]; a method is one of the
//! registry's HTTP methods, written in any case, at most once. An empty section limits
//! nothing (and warns).

use serde_json::Value;

use super::walk::{describe, Ctx, Section};

/// The largest rate accepted (a million requests per second is beyond any one machine).
pub const MAX_RATE: u64 = 1_000_000;
const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"];

/// `http.ratelimit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `rate`: requests per second over all requests (`None`: no global limit).
    pub rate: Option<u32>,
    /// `methods[]`: (upper-case method, requests per second).
    pub methods: Vec<(String, u32)>,
}

/// `http.ratelimit`: `Some(None)` when absent or empty, `None` when invalid.
pub(crate) fn ratelimit(ctx: &mut Ctx, http: &Section<'_>) -> Option<Option<RateLimitConfig>> {
    let Some(value) = http.raw("ratelimit") else {
        return Some(None);
    };
    let path = http.path_of("ratelimit");
    let section = Section::read(ctx, &path, value, &["rate", "methods"], &[])?;
    let rate = section.integer(ctx, "rate", 1, MAX_RATE);
    if section.has("rate") && rate.is_none() {
        return None;
    }
    let mut config = RateLimitConfig {
        rate: rate.map(|rate| rate as u32),
        methods: Vec::new(),
    };
    let mut ok = true;
    match section.raw("methods") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for (index, entry) in entries.iter().enumerate() {
                let entry_path = format!("{}[{index}]", section.path_of("methods"));
                let Some(entry) = Section::read(ctx, &entry_path, entry, &["method", "rate"], &[])
                else {
                    ok = false;
                    continue;
                };
                let method = entry.string(ctx, "method").map(|m| m.to_ascii_uppercase());
                let rate = entry.integer(ctx, "rate", 1, MAX_RATE);
                match (method, rate) {
                    (Some(method), Some(rate)) if METHODS.contains(&method.as_str()) => {
                        if config.methods.iter().any(|(known, _)| *known == method) {
                            ctx.error(&entry_path, format!("{method} is limited twice"));
                            ok = false;
                        } else {
                            config.methods.push((method, rate as u32));
                        }
                    }
                    (Some(method), Some(_)) => {
                        let message = format!(
                            "unknown method {method:?}; expected one of {}",
                            METHODS.join(", ")
                        );
                        ctx.error(&entry.path_of("method"), message);
                        ok = false;
                    }
                    (method, rate) => {
                        if method.is_none() && !entry.has("method") {
                            ctx.error(&entry.path_of("method"), "required");
                        }
                        if rate.is_none() && !entry.has("rate") {
                            ctx.error(&entry.path_of("rate"), "required");
                        }
                        ok = false;
                    }
                }
            }
        }
        Some(other) => {
            let message = format!(
                "expected a list of {{method, rate}}, got {}",
                describe(other)
            );
            ctx.error(&section.path_of("methods"), message);
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    if config.rate.is_none() && config.methods.is_empty() {
        ctx.warn(&path, "neither rate nor methods: nothing is limited");
        return Some(None);
    }
    Some(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn with(ratelimit: &str) -> String {
        format!(r#"{{"storage": {{"rootDirectory": "/d"}}, "http": {{"ratelimit": {ratelimit}}}}}"#)
    }

    #[test]
    fn zots_shape_is_read_and_mistakes_are_named() {
        let (config, _) = parse_str(&with(
            r#"{"rate": 500, "methods": [{"method": "put", "rate": 50}, {"method": "GET", "rate": 400}]}"#,
        ))
        .expect("zot's example");
        assert_eq!(
            config.http.ratelimit,
            Some(RateLimitConfig {
                rate: Some(500),
                methods: vec![("PUT".into(), 50), ("GET".into(), 400)],
            })
        );
        let (config, warnings) = parse_str(&with("{}")).expect("empty");
        assert_eq!(config.http.ratelimit, None);
        assert!(warnings.iter().any(|w| w.key_path == "http.ratelimit"));
        for (bad, path) in [
            (r#"{"rate": 0}"#, "http.ratelimit.rate"),
            (r#"{"rate": "fast"}"#, "http.ratelimit.rate"),
            (
                r#"{"methods": [{"method": "FETCH", "rate": 1}]}"#,
                "http.ratelimit.methods[0].method",
            ),
            (
                r#"{"methods": [{"method": "GET"}]}"#,
                "http.ratelimit.methods[0].rate",
            ),
            (
                r#"{"methods": [{"method": "GET", "rate": 1}, {"method": "get", "rate": 2}]}"#,
                "http.ratelimit.methods[1]",
            ),
            (r#"{"methods": {"GET": 1}}"#, "http.ratelimit.methods"),
            (r#"{"burst": 3}"#, "http.ratelimit.burst"),
        ] {
            let errors = parse_str(&with(bad)).expect_err(bad);
            assert!(errors.to_string().contains(path), "{bad}: {errors}");
        }
    }
}
