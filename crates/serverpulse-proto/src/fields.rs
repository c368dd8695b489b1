//! Reading fields out of a JSON document while collecting every problem by path.
//!
//! Decoders walk a `serde_json::Value` rather than deriving `Deserialize`, because the
//! protocol's errors must name the offending field (`metrics.cpu_usage`), report all of
//! them at once, and tolerate the extra fields old agents send.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Why a document was refused: one or more messages per field path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.summary())]
pub struct ValidationError {
    details: BTreeMap<String, Vec<String>>,
}

impl ValidationError {
    /// A refusal naming a single field.
    pub fn field(path: impl Into<String>, why: impl Into<String>) -> Self {
        let mut errors = Errors::default();
        errors.add(path, why);
        Self { details: errors.details }
    }

    /// Field path → reasons, as sent in the `details` member of a 400 answer.
    pub fn details(&self) -> &BTreeMap<String, Vec<String>> {
        &self.details
    }

    /// One line naming the first problem, e.g. `metrics.cpu_usage: must be between 0 and 100`.
    pub fn summary(&self) -> String {
        match self.details.iter().next() {
            Some((path, reasons)) => {
                let more = self.details.values().map(Vec::len).sum::<usize>() - 1;
                let first = reasons.first().map(String::as_str).unwrap_or("invalid");
                if more == 0 { format!("{path}: {first}") } else { format!("{path}: {first} (and {more} more)") }
            }
            None => "invalid request".to_owned(),
        }
    }
}

/// Accumulates problems while a decoder keeps reading, so one answer lists them all.
#[derive(Debug, Default)]
pub struct Errors {
    details: BTreeMap<String, Vec<String>>,
}

impl Errors {
    pub fn add(&mut self, path: impl Into<String>, why: impl Into<String>) {
        self.details.entry(path.into()).or_default().push(why.into());
    }

    pub fn is_empty(&self) -> bool {
        self.details.is_empty()
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn finish<T>(self, value: T) -> Result<T, ValidationError> {
        if self.details.is_empty() { Ok(value) } else { Err(ValidationError { details: self.details }) }
    }

    /// The recorded problems as an error (call only after recording one).
    pub fn into_error(self) -> ValidationError {
        ValidationError { details: self.details }
    }

    /// Moves the problems of a nested decode into this collection.
    pub fn absorb(&mut self, other: ValidationError) {
        for (path, reasons) in other.details {
            self.details.entry(path).or_default().extend(reasons);
        }
    }
}

/// `parent.key`, or `key` at the top level.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

/// A JSON object seen at a path; `null` members count as absent.
#[derive(Debug, Clone)]
pub struct Object<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Object<'a> {
    /// The document root, which must be an object.
    pub fn root(value: &'a Value, errors: &mut Errors) -> Option<Self> {
        Self::at(String::new(), value, errors)
    }

    /// `value` as an object, recording an error at `path` otherwise.
    pub fn at(path: String, value: &'a Value, errors: &mut Errors) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self { path, map }),
            _ => {
                let at = if path.is_empty() { "body".to_owned() } else { path };
                errors.add(at, format!("must be a JSON object, got {}", kind(value)));
                None
            }
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of a member of this object.
    pub fn child(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// An optional string member, trimmed; empty counts as a problem.
    pub fn string(&self, key: &str, max_len: usize, errors: &mut Errors) -> Option<String> {
        let value = self.get(key)?;
        // The path is spelled out only for an error: most members are fine.
        let path = || join(&self.path, key);
        match value {
            Value::String(s) => {
                let s = s.trim();
                if s.is_empty() {
                    errors.add(path(), "must not be empty");
                    None
                } else if s.chars().count() > max_len {
                    errors.add(path(), format!("must be at most {max_len} characters"));
                    None
                } else {
                    Some(s.to_owned())
                }
            }
            other => {
                errors.add(path(), format!("must be a string, got {}", kind(other)));
                None
            }
        }
    }

    /// A string member that must be present.
    pub fn required_string(&self, key: &str, max_len: usize, errors: &mut Errors) -> Option<String> {
        if !self.has(key) {
            errors.add(join(&self.path, key), "is required");
            return None;
        }
        self.string(key, max_len, errors)
    }

    /// An optional finite number.
    pub fn number(&self, key: &str, errors: &mut Errors) -> Option<f64> {
        let value = self.get(key)?;
        let path = || join(&self.path, key);
        match value.as_f64() {
            Some(n) if n.is_finite() => Some(n),
            Some(_) => {
                errors.add(path(), "must be a finite number");
                None
            }
            None => {
                errors.add(path(), format!("must be a number, got {}", kind(value)));
                None
            }
        }
    }

    /// An optional number that must not be negative.
    pub fn non_negative(&self, key: &str, errors: &mut Errors) -> Option<f64> {
        let n = self.number(key, errors)?;
        if n < 0.0 {
            errors.add(join(&self.path, key), "must not be negative");
            return None;
        }
        Some(n)
    }

    /// An optional percentage in 0–100.
    pub fn percent(&self, key: &str, errors: &mut Errors) -> Option<Percent> {
        let n = self.number(key, errors)?;
        match Percent::new(n) {
            Some(p) => Some(p),
            None => {
                errors.add(join(&self.path, key), "must be between 0 and 100");
                None
            }
        }
    }

    /// An optional cumulative counter: a whole, non-negative number that fits in `i64`.
    pub fn counter(&self, key: &str, errors: &mut Errors) -> Option<u64> {
        let n = self.non_negative(key, errors)?;
        if n > i64::MAX as f64 {
            errors.add(join(&self.path, key), "is too large");
            return None;
        }
        // Python agents sometimes send counters as floats; the fraction carries nothing.
        Some(n.trunc() as u64)
    }

    /// An optional member that must be an object.
    pub fn object(&self, key: &str, errors: &mut Errors) -> Option<Object<'a>> {
        let value = self.get(key)?;
        match value {
            Value::Object(map) => Some(Object { path: join(&self.path, key), map }),
            other => {
                errors.add(join(&self.path, key), format!("must be a JSON object, got {}", kind(other)));
                None
            }
        }
    }
}

/// A percentage known to lie in 0–100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Percent {
    pub fn new(value: f64) -> Option<Self> {
        (value.is_finite() && (0.0..=100.0).contains(&value)).then_some(Self(value))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// The JSON type name used in error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
