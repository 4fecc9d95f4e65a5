//! The `model-examples` block: requests for this model, and what the function answers to them.

use super::yaml::{Node, map, s};
use super::{Facts, OpenApiError, array, array_body, number, object, problem};

fn example(summary: impl Into<String>, value: Node) -> Node {
    map([("summary", s(summary)), ("value", value)])
}

fn json(text: &str) -> Node {
    Node::from_json(text).unwrap_or(Node::Null)
}

impl Facts<'_> {
    pub(super) fn examples(&self) -> Node {
        let mut entries = self.requests();
        entries.extend(self.answers());
        entries.push((
            "ModelCard",
            example(
                "The manifest of the model this document was generated for",
                json(self.model.card_json()),
            ),
        ));
        entries.extend(self.problems());
        map(entries)
    }

    fn named_body(&self, row: &[f64]) -> String {
        format!("{{\"data\": {}}}", object(self.features, row))
    }

    fn batch_body(&self) -> String {
        format!(
            "{{\"instances\": [{}, {}, {}]}}",
            array(&self.low),
            object(self.features, &self.typical),
            array(&self.high)
        )
    }

    fn requests(&self) -> Vec<(&'static str, Node)> {
        let outside = if self.outside == self.typical {
            "No feature has a known training range: no warnings".to_owned()
        } else {
            "A value outside its feature's training range (allowed, with a warning)".to_owned()
        };
        vec![
            (
                "PredictArray",
                example(
                    "The features in manifest order",
                    json(&array_body(&self.typical)),
                ),
            ),
            (
                "PredictNamed",
                example(
                    "The same row, each feature by name",
                    json(&self.named_body(&self.typical)),
                ),
            ),
            (
                "PredictOutsideRange",
                example(outside, json(&array_body(&self.outside))),
            ),
            (
                "PredictBatch",
                example("Three rows, either shape", json(&self.batch_body())),
            ),
        ]
    }

    /// The function's answer to `row`, as JSON.
    fn answer(&self, row: &[f64], proba: bool) -> Node {
        json(&serde_json::to_string(&self.model.predict(row, proba)).unwrap_or_default())
    }

    fn answers(&self) -> Vec<(&'static str, Node)> {
        let proba = if self.classifier() {
            "Token with scopes `predict predict:proba`"
        } else {
            "Token with scopes `predict predict:proba`: a regressor has no class probabilities"
        };
        let batch: Vec<Node> = [&self.low, &self.typical, &self.high]
            .into_iter()
            .map(|row| self.answer(row, false))
            .collect();
        vec![
            (
                "PredictAnswer",
                example(
                    format!(
                        "`{}`, token with scope `predict`",
                        array_body(&self.typical)
                    ),
                    self.answer(&self.typical, false),
                ),
            ),
            (
                "PredictAnswerProba",
                example(
                    format!("`{}`, {}", array_body(&self.high), lowercase_first(proba)),
                    self.answer(&self.high, true),
                ),
            ),
            (
                "PredictAnswerOutsideRange",
                example(
                    format!("`{}`", array_body(&self.outside)),
                    self.answer(&self.outside, false),
                ),
            ),
            (
                "PredictBatchAnswer",
                example(
                    "One prediction per row, in request order",
                    map([
                        ("predictions", Node::Seq(batch)),
                        ("model_version", s(self.model.version())),
                    ]),
                ),
            ),
        ]
    }

    /// A validation problem: `body` as the summary, the function's 422 as the value.
    fn refused(&self, body: &str, batch: bool) -> Result<Node, OpenApiError> {
        let request = self.model.request();
        let error = if batch {
            request.parse_batch(body.as_bytes()).err()
        } else {
            request.parse_single(body.as_bytes()).err()
        };
        let error = error
            .ok_or_else(|| OpenApiError::Example(format!("the bad example {body} was accepted")))?;
        Ok(example(format!("`{body}`"), problem(error)))
    }

    fn problems(&self) -> Vec<(&'static str, Node)> {
        let cases = [
            ("ValidationBadValues", self.bad_values(), false),
            ("ValidationBadBatchRow", self.bad_batch_row(), true),
            ("ValidationNamedFeatures", self.misnamed(), false),
            (
                "ValidationUnknownField",
                format!("{{\"data\": {}, \"debug\": true}}", array(&self.typical)),
                false,
            ),
            ("ValidationNotAnObject", array(&self.typical), false),
        ];
        cases
            .into_iter()
            .map(|(name, body, batch)| {
                let node = self
                    .refused(&body, batch)
                    .unwrap_or_else(|error| example(format!("`{body}`"), s(error.to_string())));
                (name, node)
            })
            .collect()
    }

    /// Where a bad value goes: the second feature (the first of a one-feature model).
    fn second(&self) -> usize {
        1.min(self.n() - 1)
    }

    /// The typical row with a string for one feature and, where the features have bounds, a
    /// value below one's lower bound and one above another's upper bound.
    fn bad_values(&self) -> String {
        let mut values: Vec<String> = self.typical.iter().map(|x| number(*x)).collect();
        values[self.second()] = "\"NaN\"".to_owned();
        let mut low_done = false;
        let mut high_done = false;
        for (index, feature) in self.features.iter().enumerate() {
            if index == self.second() {
                continue;
            }
            let allowed = feature.allowed();
            let low = allowed
                .exclusive_minimum
                .or(allowed.minimum.map(|m| m - 1.0));
            let high = allowed
                .exclusive_maximum
                .or(allowed.maximum.map(|m| m + 1.0));
            match (low, high) {
                (Some(low), _) if !low_done => {
                    values[index] = number(low);
                    low_done = true;
                }
                (_, Some(high)) if !high_done => {
                    values[index] = number(high);
                    high_done = true;
                }
                _ => {}
            }
        }
        format!("{{\"data\": [{}]}}", values.join(", "))
    }

    /// A good row, then the typical row with a number sent as a string.
    fn bad_batch_row(&self) -> String {
        let mut values: Vec<String> = self.typical.iter().map(|x| number(*x)).collect();
        let second = self.second();
        values[second] = format!("\"{}\"", number(self.typical[second]));
        format!(
            "{{\"instances\": [{}, [{}]]}}",
            array(&self.low),
            values.join(", ")
        )
    }

    /// Every feature by name but the last, and a name that is not a feature.
    fn misnamed(&self) -> String {
        let mut unknown = "not_a_feature".to_owned();
        while self.features.iter().any(|f| f.name == unknown) {
            unknown.push('_');
        }
        let n = self.n() - 1;
        let known = object(&self.features[..n], &self.typical[..n]);
        let members = known.trim_start_matches('{').trim_end_matches('}');
        let separator = if members.is_empty() { "" } else { ", " };
        format!("{{\"data\": {{{members}{separator}\"{unknown}\": 1}}}}")
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}
