//! Reading AWS JSON 1.1 request bodies member by member, and collecting model-constraint
//! violations in AWS's message format.

use std::collections::BTreeMap;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{validation_error, violation, KmsError, Shown};
use crate::secret::Secret;

/// Standard alphabet; padding optional on input (clients differ), canonical trailing bits
/// required.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The members of a request body. Members are taken out as they are read; whatever is left
/// when this is dropped (unknown members, or everything after an early error) has its strings
/// zeroized, so a base64 plaintext never outlives the request in a plain `String`.
pub(crate) struct Members {
    map: Map<String, Value>,
}

fn scrub(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(scrub),
        Value::Object(o) => o.values_mut().for_each(scrub),
        _ => {}
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.map.values_mut().for_each(scrub);
    }
}

fn wrong_type(member: &str, expected: &str) -> KmsError {
    KmsError::serialization(format!("Member '{member}' must be {expected}."))
}

impl Members {
    /// Parses a body that must be one JSON object. An empty (or whitespace-only) body is read
    /// as `{}`.
    pub fn parse(body: &[u8]) -> Result<Self, KmsError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self { map: Map::new() });
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Self { map }),
            Ok(mut other) => {
                scrub(&mut other);
                Err(KmsError::serialization("The request body must be a JSON object."))
            }
            Err(_) => Err(KmsError::serialization("The request body is not valid JSON.")),
        }
    }

    /// Takes a member; JSON `null` counts as absent.
    fn take(&mut self, member: &str) -> Option<Value> {
        match self.map.remove(member) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn string(&mut self, member: &str) -> Result<Option<String>, KmsError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(mut v) => {
                scrub(&mut v);
                Err(wrong_type(member, "a string"))
            }
        }
    }

    pub fn integer(&mut self, member: &str) -> Result<Option<i64>, KmsError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| wrong_type(member, "an integer")),
            Some(mut v) => {
                scrub(&mut v);
                Err(wrong_type(member, "an integer"))
            }
        }
    }

    /// An AWS JSON timestamp: a number of seconds since the epoch (fractions allowed, as boto3
    /// and the AWS CLI send it), returned in whole milliseconds. Negative or non-finite
    /// numbers are refused.
    pub fn timestamp_ms(&mut self, member: &str) -> Result<Option<u64>, KmsError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(secs) if (0.0..1e13).contains(&secs) => Ok(Some((secs * 1000.0).round() as u64)),
                _ => Err(wrong_type(member, "a timestamp (seconds since the epoch)")),
            },
            Some(mut v) => {
                scrub(&mut v);
                Err(wrong_type(member, "a timestamp (seconds since the epoch)"))
            }
        }
    }

    pub fn boolean(&mut self, member: &str) -> Result<Option<bool>, KmsError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(mut v) => {
                scrub(&mut v);
                Err(wrong_type(member, "a boolean"))
            }
        }
    }

    /// Whether a member is present (any non-null value); the value is discarded.
    pub fn present(&mut self, member: &str) -> bool {
        match self.take(member) {
            None => false,
            Some(mut v) => {
                scrub(&mut v);
                true
            }
        }
    }

    /// A non-secret blob (base64 text → bytes).
    pub fn blob(&mut self, member: &str) -> Result<Option<Vec<u8>>, KmsError> {
        match self.string(member)? {
            None => Ok(None),
            Some(text) => {
                BASE64.decode(text.as_bytes()).map(Some).map_err(|_| wrong_type(member, "a base64-encoded blob"))
            }
        }
    }

    /// A secret blob: decoded straight into a zeroizing buffer sized up front, and the base64
    /// text is zeroized.
    pub fn secret(&mut self, member: &str) -> Result<Option<Secret>, KmsError> {
        let Some(mut text) = self.string(member)? else { return Ok(None) };
        let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 + 3));
        let decoded = BASE64.decode_vec(text.as_bytes(), &mut out);
        text.zeroize();
        match decoded {
            Ok(()) => Ok(Some(Secret::new(out))),
            Err(_) => Err(wrong_type(member, "a base64-encoded blob")),
        }
    }

    pub fn string_list(&mut self, member: &str) -> Result<Option<Vec<String>>, KmsError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                let mut bad = false;
                for item in items {
                    match item {
                        Value::String(s) => out.push(s),
                        mut other => {
                            scrub(&mut other);
                            bad = true;
                        }
                    }
                }
                if bad {
                    out.iter_mut().for_each(|s| s.zeroize());
                    return Err(wrong_type(member, "a list of strings"));
                }
                Ok(Some(out))
            }
            Some(mut v) => {
                scrub(&mut v);
                Err(wrong_type(member, "a list of strings"))
            }
        }
    }

    pub fn string_map(&mut self, member: &str) -> Result<Option<BTreeMap<String, String>>, KmsError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::Object(entries)) => {
                let mut out = BTreeMap::new();
                for (k, v) in entries {
                    match v {
                        Value::String(s) => {
                            out.insert(k, s);
                        }
                        _ => return Err(wrong_type(member, "a map of strings to strings")),
                    }
                }
                Ok(Some(out))
            }
            Some(mut v) => {
                scrub(&mut v);
                Err(wrong_type(member, "a map of strings to strings"))
            }
        }
    }

    /// A nested structure (e.g. CreateGrant `Constraints`), read with the same getters.
    pub fn object(&mut self, member: &str) -> Result<Option<Members>, KmsError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Members { map })),
            Some(mut v) => {
                scrub(&mut v);
                Err(wrong_type(member, "a structure"))
            }
        }
    }

    /// A list of `{TagKey, TagValue}` structures; each member may be absent (the validator
    /// reports it as null).
    pub fn tags(&mut self, member: &str) -> Result<Option<Vec<RawTag>>, KmsError> {
        match self.take(member) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let Value::Object(map) = item else {
                        return Err(wrong_type(member, "a list of Tag structures"));
                    };
                    let mut inner = Members { map };
                    let key = inner.string("TagKey")?;
                    let value = inner.string("TagValue")?;
                    out.push((key, value));
                }
                Ok(Some(out))
            }
            Some(mut v) => {
                scrub(&mut v);
                Err(wrong_type(member, "a list of Tag structures"))
            }
        }
    }
}

/// A tag as sent: `TagKey` and `TagValue`, each possibly absent.
pub(crate) type RawTag = (Option<String>, Option<String>);

/// Collects model-constraint violations; [`Checks::finish`] turns them into one
/// ValidationException in AWS's format.
#[derive(Default)]
pub(crate) struct Checks {
    violations: Vec<String>,
}

impl Checks {
    pub fn push(&mut self, v: String) {
        self.violations.push(v);
    }

    /// A required member: records `Value null at '<member>' … Member must not be null` when
    /// absent.
    pub fn required<T>(&mut self, value: Option<T>, member: &str) -> Option<T> {
        if value.is_none() {
            self.push(violation(Shown::Null, member, "not be null"));
        }
        value
    }

    /// String length in characters, value echoed.
    pub fn str_len(&mut self, s: &str, member: &str, min: usize, max: usize) {
        let n = s.chars().count();
        if n < min {
            self.push(violation(Shown::Value(s), member, &format!("have length greater than or equal to {min}")));
        } else if n > max {
            self.push(violation(Shown::Value(s), member, &format!("have length less than or equal to {max}")));
        }
    }

    /// Length (bytes, items) of something whose value is not echoed.
    pub fn hidden_len(&mut self, n: usize, member: &str, min: usize, max: usize) {
        if n < min {
            self.push(violation(Shown::Hidden, member, &format!("have length greater than or equal to {min}")));
        } else if n > max {
            self.push(violation(Shown::Hidden, member, &format!("have length less than or equal to {max}")));
        }
    }

    /// Integer range, value echoed.
    pub fn range(&mut self, n: i64, member: &str, min: i64, max: i64) {
        let text = n.to_string();
        if n < min {
            self.push(violation(Shown::Value(&text), member, &format!("have value greater than or equal to {min}")));
        } else if n > max {
            self.push(violation(Shown::Value(&text), member, &format!("have value less than or equal to {max}")));
        }
    }

    /// An enum member: parses `text` with `parse`, or records the value-set violation.
    pub fn enum_value<E>(
        &mut self,
        text: Option<String>,
        member: &str,
        parse: fn(&str) -> Option<E>,
        value_set: String,
    ) -> Option<E> {
        let text = text?;
        let parsed = parse(&text);
        if parsed.is_none() {
            self.push(violation(Shown::Value(&text), member, &format!("satisfy enum value set: {value_set}")));
        }
        parsed
    }

    /// A pattern constraint that `ok` says whether `s` satisfies.
    pub fn pattern(&mut self, s: &str, member: &str, ok: bool, pattern: &str) {
        if !ok {
            self.push(violation(Shown::Value(s), member, &format!("satisfy regular expression pattern: {pattern}")));
        }
    }

    pub fn finish(self) -> Result<(), KmsError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(validation_error(&self.violations))
        }
    }
}
