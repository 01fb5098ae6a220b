//! The walk over a parsed config document (`serde_json::Value`) that collects every problem.
//!
//! Rules:
//! - Nothing here stops at the first problem: every reader records an error (with its key path)
//!   in [`Ctx`] and returns `None`, so one run reports everything that is wrong.
//! - Key matching per object: an exact (camelCase) match is silent; a match that differs only by
//!   case is accepted with a warning (zot reads keys case-insensitively through viper); a zot key
//!   berth knowingly ignores gives one warning; any other key is an error. The same key given
//!   twice in different case is an error.
//! - A `null` value counts as absent (YAML writes `key:` with no value that way).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::duration::parse_go_duration;
use super::postgres::Environment;
use super::{ConfigError, Warning};

/// Collected problems of one load, and the environment the load reads.
#[derive(Default)]
pub(crate) struct Ctx {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<Warning>,
    /// Where environment variables come from (`BERTH_POSTGRES_URL`): the process, or a map.
    pub env: Environment,
}

impl Ctx {
    pub fn error(&mut self, key_path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key_path: key_path.to_owned(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, key_path: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            key_path: key_path.to_owned(),
            message: message.into(),
        });
    }
}

/// Joins a key path and a key: `http` + `port` = `http.port`; keys that are not identifiers
/// (`/mirror`, `ci/**`) are quoted: `storage.subPaths["/mirror"]`.
pub(crate) fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (true, false) => format!("[{key:?}]"),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[{key:?}]"),
    }
}

/// Short description of a JSON value for error messages: `"abc"`, `12`, `an object`.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) if text.chars().count() <= 64 => format!("{text:?}"),
        Value::String(_) => "a long string".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// A zot key that berth accepts but does not act on yet, with the text of its warning.
pub(crate) type Ignored = (&'static str, &'static str);

/// One JSON object whose keys were matched against a known set.
pub(crate) struct Section<'a> {
    pub path: String,
    fields: BTreeMap<&'static str, &'a Value>,
}

impl<'a> Section<'a> {
    /// Matches the keys of `value` (which must be an object, or null = empty) against `known`
    /// (keys berth reads) and `ignored` (zot keys berth warns about). Returns `None` if `value`
    /// is not an object.
    pub fn read(
        ctx: &mut Ctx,
        path: &str,
        value: &'a Value,
        known: &[&'static str],
        ignored: &[Ignored],
    ) -> Option<Section<'a>> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let map = match value {
            Value::Object(map) => map,
            Value::Null => EMPTY.get_or_init(Map::new),
            other => {
                ctx.error(path, format!("expected an object, got {}", describe(other)));
                return None;
            }
        };
        let mut fields = BTreeMap::new();
        let mut spelled: BTreeMap<&'static str, &str> = BTreeMap::new();
        for (key, field_value) in map {
            let key_path = join(path, key);
            let ignored_match = |exact: bool| {
                ignored.iter().find(|entry| {
                    if exact {
                        entry.0 == key
                    } else {
                        entry.0.eq_ignore_ascii_case(key)
                    }
                })
            };
            let canonical = known
                .iter()
                .copied()
                .find(|name| *name == key)
                .or_else(|| ignored_match(true).map(|entry| entry.0))
                .or_else(|| {
                    let folded = known
                        .iter()
                        .copied()
                        .find(|name| name.eq_ignore_ascii_case(key))
                        .or_else(|| ignored_match(false).map(|entry| entry.0))?;
                    ctx.warn(
                        &key_path,
                        format!(
                            "matched key `{folded}` ignoring case; berth accepts this as zot \
                             does, but write it as `{folded}`"
                        ),
                    );
                    Some(folded)
                });
            let Some(canonical) = canonical else {
                let mut message = "unknown key".to_owned();
                if !known.is_empty() {
                    message.push_str(&format!(" (known keys here: {})", known.join(", ")));
                }
                ctx.error(&key_path, message);
                continue;
            };
            if let Some(first) = spelled.insert(canonical, key) {
                ctx.error(
                    &key_path,
                    format!("key `{canonical}` given twice (as `{first}` and `{key}`)"),
                );
                continue;
            }
            if let Some(entry) = ignored.iter().find(|entry| entry.0 == canonical) {
                ctx.warn(&join(path, canonical), entry.1);
                continue;
            }
            if !field_value.is_null() {
                fields.insert(canonical, field_value);
            }
        }
        Some(Section {
            path: path.to_owned(),
            fields,
        })
    }

    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.fields.get(key).copied()
    }

    pub fn has(&self, key: &str) -> bool {
        self.fields.contains_key(key)
    }

    pub fn string(&self, ctx: &mut Ctx, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(text) => Some(text.clone()),
            other => {
                let message = format!("expected a string, got {}", describe(other));
                ctx.error(&self.path_of(key), message);
                None
            }
        }
    }

    pub fn boolean(&self, ctx: &mut Ctx, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(flag) => Some(*flag),
            other => {
                let message = format!("expected true or false, got {}", describe(other));
                ctx.error(&self.path_of(key), message);
                None
            }
        }
    }

    /// A non-negative integer in `min..=max`. zot writes some numbers as strings (the port);
    /// those go through [`Section::port`], not here.
    pub fn integer(&self, ctx: &mut Ctx, key: &str, min: u64, max: u64) -> Option<u64> {
        let value = self.raw(key)?;
        match value.as_u64() {
            Some(number) if (min..=max).contains(&number) => Some(number),
            _ => {
                let message = format!(
                    "expected an integer from {min} to {max}, got {}",
                    describe(value)
                );
                ctx.error(&self.path_of(key), message);
                None
            }
        }
    }

    /// A Go duration string (see `duration.rs`).
    pub fn duration(&self, ctx: &mut Ctx, key: &str) -> Option<Duration> {
        match self.raw(key)? {
            Value::String(text) => match parse_go_duration(text) {
                Ok(duration) => Some(duration),
                Err(message) => {
                    ctx.error(&self.path_of(key), message);
                    None
                }
            },
            other => {
                let message = format!(
                    "expected a duration string like \"30s\" or \"1h30m\", got {}",
                    describe(other)
                );
                ctx.error(&self.path_of(key), message);
                None
            }
        }
    }

    /// A duration that must be strictly positive.
    pub fn positive_duration(&self, ctx: &mut Ctx, key: &str) -> Option<Duration> {
        let duration = self.duration(ctx, key)?;
        if duration.is_zero() {
            ctx.error(&self.path_of(key), "must be greater than zero");
            return None;
        }
        Some(duration)
    }

    /// A list of strings.
    pub fn strings(&self, ctx: &mut Ctx, key: &str) -> Option<Vec<String>> {
        let value = self.raw(key)?;
        let Value::Array(items) = value else {
            let message = format!("expected a list of strings, got {}", describe(value));
            ctx.error(&self.path_of(key), message);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            match item {
                Value::String(text) => out.push(text.clone()),
                other => {
                    let path = format!("{}[{index}]", self.path_of(key));
                    ctx.error(&path, format!("expected a string, got {}", describe(other)));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

/// The list at `key` (absent = empty), each item read by `item` with its indexed path.
pub(crate) fn list<T>(
    ctx: &mut Ctx,
    section: &Section<'_>,
    key: &str,
    mut item: impl FnMut(&mut Ctx, &str, &Value) -> Option<T>,
) -> Option<Vec<T>> {
    let Some(value) = section.raw(key) else {
        return Some(Vec::new());
    };
    let path = section.path_of(key);
    let Value::Array(items) = value else {
        ctx.error(&path, format!("expected a list, got {}", describe(value)));
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, value) in items.iter().enumerate() {
        match item(ctx, &format!("{path}[{index}]"), value) {
            Some(parsed) => out.push(parsed),
            None => ok = false,
        }
    }
    ok.then_some(out)
}
