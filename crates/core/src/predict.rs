//! The prediction request contract: parsing and validation against the served model's
//! features, with a JSON Pointer for every rejected value.
//!
//! Everything model-specific comes from the manifest ([`RequestSchema::new`]): how many values
//! a row has, their names, and the values each may take (the manifest's allowed range; none:
//! any finite number). A row is sent in one of two shapes:
//!
//! - an array in the manifest's feature order — the tutorial's shape, kept so its clients work
//!   unchanged (`{"data": [5.1, 3.5, 1.4, 0.2]}`);
//! - an object naming every feature exactly once (`{"data": {"sepal_length": 5.1, …}}`), for
//!   clients that would rather not depend on an order. An unknown, missing or repeated name is
//!   a 422 pointing at it.
//!
//! Parsing happens in two steps on purpose:
//!
//! 1. The body is read into [`Json`], a document type that keeps every member of an object in
//!    order, a repeated key included, so an unknown key and a repeated key are both rejected
//!    with a pointer to the key (`serde_json::Value` would silently keep the last copy of a
//!    repeated key — a classic parser differential).
//! 2. The values are checked one by one against their feature, so a response can point at
//!    *every* bad value (`/instances/3/1`, `/data/petal_width`), not just the first one, and
//!    each detail names the feature.
//!
//! Syntax errors (including numbers too large for an `f64`, such as `1e400`, which the JSON
//! lexer itself refuses) are `400 Bad Request`; a well-formed body with wrong values is
//! `422 Unprocessable Content`.

use std::collections::HashMap;

use tree_model::{AllowedRange, Feature};

use crate::problem::{ApiError, FieldError, FieldErrors};

/// Largest accepted body, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most rows in one batch.
pub const MAX_BATCH_ROWS: usize = 100;
/// Longest member name a problem repeats in a pointer. A longer unknown name is reported at its
/// object instead: escaped (`/` is `~1`), a pointer can be twice the name, so quoting every
/// name would let a request of long names buy an answer larger than itself.
pub const MAX_QUOTED_NAME_BYTES: usize = 64;

/// A JSON document as the request parser reads it: like `serde_json::Value`, except that an
/// object keeps every member in order, a repeated key included, and a number is already the
/// `f64` it is served as (`Value::as_f64`'s conversion).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool,
    Number(f64),
    String,
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// What a message calls this kind of value.
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "a boolean",
            Json::Number(_) => "a number",
            Json::String => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }

    #[allow(clippy::cast_precision_loss)] // exactly `Value::as_f64`'s conversion
    fn visit_u64<E>(self, value: u64) -> Result<Json, E> {
        Ok(Json::Number(value as f64))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E>(self, value: i64) -> Result<Json, E> {
        Ok(Json::Number(value as f64))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Json, E> {
        Ok(Json::Number(value))
    }

    fn visit_str<E>(self, _: &str) -> Result<Json, E> {
        Ok(Json::String)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

/// Parses a body into a [`Json`] document: a syntax error is `400`, anything well-formed is
/// a document.
pub fn parse_json(body: &[u8]) -> Result<Json, ApiError> {
    serde_json::from_slice(body).map_err(|error| ApiError::MalformedJson {
        detail: error.to_string(),
    })
}

/// One feature as requests must give it.
#[derive(Debug, Clone)]
struct FeatureRule {
    name: String,
    /// `name` escaped as a JSON Pointer reference token.
    token: String,
    allowed: AllowedRange,
    /// ` (cm)`, or empty.
    unit: String,
}

impl FeatureRule {
    /// Checks one value of this feature.
    fn check(&self, value: &Json, pointer: &dyn Fn() -> String, errors: &mut FieldErrors) {
        match value {
            Json::Number(x) if self.allowed.contains(*x) => {}
            Json::Number(x) => errors.push_with(|| {
                FieldError::new(
                    pointer(),
                    format!(
                        "{} must be {}{}, got {}",
                        self.name,
                        describe(&self.allowed),
                        self.unit,
                        number(*x)
                    ),
                )
            }),
            other => errors.push_with(|| {
                FieldError::new(
                    pointer(),
                    format!("{} must be a number, got {}", self.name, other.kind()),
                )
            }),
        }
    }
}

/// The allowed range in words: `greater than 0 and at most 100`; `a finite number` when the
/// manifest sets no bound.
fn describe(allowed: &AllowedRange) -> String {
    let low = match (allowed.exclusive_minimum, allowed.minimum) {
        (Some(m), _) => Some(format!("greater than {}", number(m))),
        (None, Some(m)) => Some(format!("at least {}", number(m))),
        (None, None) => None,
    };
    let high = match (allowed.exclusive_maximum, allowed.maximum) {
        (Some(m), _) => Some(format!("less than {}", number(m))),
        (None, Some(m)) => Some(format!("at most {}", number(m))),
        (None, None) => None,
    };
    match (low, high) {
        (Some(low), Some(high)) => format!("{low} and {high}"),
        (Some(bound), None) | (None, Some(bound)) => bound,
        (None, None) => "a finite number".to_owned(),
    }
}

/// Validated rows of a batch, row-major: `len() × width` values, each row in the manifest's
/// feature order.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    values: Vec<f64>,
    width: usize,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Values per row (the model's feature count).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Every value, row after row (what the ensemble's batch path takes).
    pub fn as_flat(&self) -> &[f64] {
        &self.values
    }

    /// The rows.
    pub fn iter(&self) -> std::slice::ChunksExact<'_, f64> {
        self.values.chunks_exact(self.width.max(1))
    }
}

/// What a prediction request must look like for one model: its features, in manifest order,
/// each with the values it may take. Built once at init from the manifest.
#[derive(Debug, Clone)]
pub struct RequestSchema {
    features: Vec<FeatureRule>,
    by_name: HashMap<String, usize>,
}

impl RequestSchema {
    /// The contract for a model with these features (the manifest's, in request order).
    pub fn new(features: &[Feature]) -> RequestSchema {
        let rules: Vec<FeatureRule> = features
            .iter()
            .map(|f| FeatureRule {
                name: f.name.clone(),
                token: escape_pointer(&f.name),
                allowed: f.allowed(),
                unit: f
                    .unit
                    .as_deref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default(),
            })
            .collect();
        let by_name = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.name.clone(), index))
            .collect();
        RequestSchema {
            features: rules,
            by_name,
        }
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.features.len()
    }

    /// Parses and validates a `POST /predict` body: one row.
    pub fn parse_single(&self, body: &[u8]) -> Result<Vec<f64>, ApiError> {
        let (field, mut errors) = envelope(parse_json(body)?, "data")?;
        let mut row = Vec::with_capacity(self.width());
        match field {
            None => errors.push(FieldError::new("/data", "is required")),
            Some(value) => self.check_row(&value, "/data", &mut errors, &mut row),
        }
        if errors.is_empty() {
            Ok(row)
        } else {
            Err(errors.into_error())
        }
    }

    /// Parses and validates a `POST /predict/batch` body: 1 to [`MAX_BATCH_ROWS`] rows. Any
    /// invalid row rejects the whole request, with a pointer to every bad value.
    pub fn parse_batch(&self, body: &[u8]) -> Result<Rows, ApiError> {
        let (field, mut errors) = envelope(parse_json(body)?, "instances")?;
        let instances = match field {
            Some(Json::Array(rows)) if errors.is_empty() => rows,
            Some(Json::Array(_)) => return Err(errors.into_error()),
            None => {
                errors.push(FieldError::new("/instances", "is required"));
                return Err(errors.into_error());
            }
            Some(other) => {
                errors.push(FieldError::new(
                    "/instances",
                    format!("must be an array of rows, got {}", other.kind()),
                ));
                return Err(errors.into_error());
            }
        };
        if instances.is_empty() {
            return Err(invalid("/instances", "must contain at least 1 row"));
        }
        if instances.len() > MAX_BATCH_ROWS {
            return Err(invalid(
                "/instances",
                format!(
                    "must contain at most {MAX_BATCH_ROWS} rows, got {}",
                    instances.len()
                ),
            ));
        }
        let mut values = Vec::with_capacity(instances.len() * self.width());
        for (i, row) in instances.iter().enumerate() {
            self.check_row(row, &format!("/instances/{i}"), &mut errors, &mut values);
        }
        if errors.is_empty() {
            Ok(Rows {
                values,
                width: self.width(),
            })
        } else {
            Err(errors.into_error())
        }
    }

    /// Checks one row at `pointer`, pushing every problem found, and appends its values (in
    /// feature order) to `out`. What `out` holds after an error is meaningless.
    fn check_row(&self, value: &Json, pointer: &str, errors: &mut FieldErrors, out: &mut Vec<f64>) {
        let start = out.len();
        out.resize(start + self.width(), 0.0);
        let slots = &mut out[start..];
        match value {
            Json::Array(items) => self.check_array(items, pointer, errors, slots),
            Json::Object(members) => self.check_object(members, pointer, errors, slots),
            other => errors.push_with(|| {
                FieldError::new(
                    pointer,
                    format!(
                        "must be an array of {} or an object naming every feature, got {}",
                        numbers(self.width()),
                        other.kind()
                    ),
                )
            }),
        }
    }

    /// A row as an array: the features in manifest order.
    fn check_array(
        &self,
        items: &[Json],
        pointer: &str,
        errors: &mut FieldErrors,
        slots: &mut [f64],
    ) {
        if items.len() != self.width() {
            errors.push_with(|| {
                FieldError::new(
                    pointer,
                    format!(
                        "must contain exactly {} (the features in order), got {}",
                        numbers(self.width()),
                        items.len()
                    ),
                )
            });
        }
        for (i, item) in items.iter().enumerate() {
            let item_pointer = || format!("{pointer}/{i}");
            match (self.features.get(i), item) {
                (Some(feature), _) => feature.check(item, &item_pointer, errors),
                // Past the last feature: counted above, and pointed at when not even a number.
                (None, Json::Number(_)) => {}
                (None, other) => errors.push_with(|| {
                    FieldError::new(
                        item_pointer(),
                        format!("must be a number, got {}", other.kind()),
                    )
                }),
            }
            if let (Some(slot), Json::Number(x)) = (slots.get_mut(i), item) {
                *slot = *x;
            }
        }
    }

    /// A row as an object: every feature by name, exactly once.
    fn check_object(
        &self,
        members: &[(String, Json)],
        pointer: &str,
        errors: &mut FieldErrors,
        slots: &mut [f64],
    ) {
        let mut seen = vec![false; self.width()];
        for (name, value) in members {
            let member = || format!("{pointer}/{}", escape_pointer(name));
            let Some(&index) = self.by_name.get(name) else {
                errors
                    .push_with(|| unknown_member(pointer, name, "is not a feature of this model"));
                continue;
            };
            if std::mem::replace(&mut seen[index], true) {
                errors.push_with(|| FieldError::new(member(), "appears more than once"));
                continue;
            }
            self.features[index].check(value, &member, errors);
            if let Json::Number(x) = value {
                slots[index] = *x;
            }
        }
        for (feature, _) in self.features.iter().zip(&seen).filter(|(_, seen)| !**seen) {
            errors.push_with(|| {
                FieldError::new(
                    format!("{pointer}/{}", feature.token),
                    format!(
                        "is required: a row names each of the model's {} features",
                        self.width()
                    ),
                )
            });
        }
    }
}

/// The body's top level: an object whose only member is `field`. Returns that member's value
/// (when present) and the errors found so far: unknown and repeated members.
fn envelope(document: Json, field: &'static str) -> Result<(Option<Json>, FieldErrors), ApiError> {
    let Json::Object(members) = document else {
        return Err(invalid(
            "",
            format!("the body must be a JSON object with the field `{field}`"),
        ));
    };
    let mut value = None;
    let mut errors = FieldErrors::new();
    for (key, member) in members {
        if key != field {
            errors.push_with(|| unknown_member("", &key, "is not a known field"));
        } else if value.is_some() {
            // `serde_json::Value` would keep the last copy: a parser differential.
            errors.push(FieldError::new(
                format!("/{field}"),
                "appears more than once",
            ));
        } else {
            value = Some(member);
        }
    }
    Ok((value, errors))
}

/// The error for a member `name` of the object at `object` that should not be there: pointed
/// at by name when the name is short enough to repeat, else at the object.
fn unknown_member(object: &str, name: &str, detail: &str) -> FieldError {
    if name.len() <= MAX_QUOTED_NAME_BYTES {
        FieldError::new(format!("{object}/{}", escape_pointer(name)), detail)
    } else {
        FieldError::new(
            object,
            format!("has a member whose name ({} bytes) {detail}", name.len()),
        )
    }
}

fn invalid(pointer: &str, detail: impl Into<String>) -> ApiError {
    let mut errors = FieldErrors::new();
    errors.push(FieldError::new(pointer, detail));
    errors.into_error()
}

/// Escapes a key for use in a JSON Pointer (RFC 6901 §3).
pub fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `1 number`, `4 numbers`.
fn numbers(n: usize) -> String {
    if n == 1 {
        "1 number".to_owned()
    } else {
        format!("{n} numbers")
    }
}

/// A client's number as messages quote it: plain decimals for ordinary magnitudes, exponent
/// notation otherwise, so no value can make a message long (`{}` writes 5e-324 out as 326
/// characters: a 100-row batch of them would grow a 3 KB request into a 170 KB answer).
pub fn number(x: f64) -> String {
    if x == 0.0 || (1e-4..1e9).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests;
