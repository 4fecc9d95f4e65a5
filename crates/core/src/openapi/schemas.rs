//! The `model-schemas` block: what a row, a request and an answer look like for this model.

use super::yaml::{Node, map, num, reference, s};
use super::{Facts, MAX_BATCH_ROWS, bounds, number};

fn schema(name: &str) -> Node {
    reference("schemas", name)
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Node {
    Node::Seq(items.into_iter().map(|item| s(item)).collect())
}

impl Facts<'_> {
    pub(super) fn schemas(&self) -> Node {
        let mut entries: Vec<(String, Node)> = self
            .features
            .iter()
            .enumerate()
            .map(|(index, _)| (self.names[index].clone(), self.feature(index)))
            .collect();
        entries.extend([
            ("FeatureRow".to_owned(), self.row()),
            ("FeatureArray".to_owned(), self.array()),
            ("FeatureObject".to_owned(), self.object()),
            ("PredictRequest".to_owned(), self.request()),
            ("PredictBatchRequest".to_owned(), self.batch_request()),
            ("Prediction".to_owned(), self.prediction()),
        ]);
        if self.classifier() {
            entries.push(("Probabilities".to_owned(), self.probabilities()));
        }
        Node::Map(entries)
    }

    /// One feature's values.
    fn feature(&self, index: usize) -> Node {
        let f = &self.features[index];
        let unit = f
            .unit
            .as_deref()
            .map(|u| format!(" ({u})"))
            .unwrap_or_default();
        let training = match f.training_range() {
            Some((min, max)) => format!(
                "the training data spans [{}, {}] (a value outside it gets a warning)",
                number(min),
                number(max)
            ),
            None => "its training range is unknown".to_owned(),
        };
        let mut entries = vec![
            (
                "description",
                s(format!(
                    "`{}`{unit}, feature {} of {}: {}; allowed: {}.",
                    f.name,
                    index + 1,
                    self.n(),
                    training,
                    f.allowed().describe()
                )),
            ),
            ("type", s("number")),
        ];
        entries.extend(bounds(&f.allowed()));
        entries.push(("examples", Node::Seq(vec![num(self.typical[index])])));
        map(entries)
    }

    fn row(&self) -> Node {
        map([
            (
                "description",
                s(format!(
                    "One row of the model's {} feature values: an array in feature order, or an object naming each feature exactly once.",
                    self.n()
                )),
            ),
            (
                "oneOf",
                Node::Seq(vec![schema("FeatureArray"), schema("FeatureObject")]),
            ),
        ])
    }

    fn array(&self) -> Node {
        let order: Vec<String> = self
            .features
            .iter()
            .map(|f| format!("`{}`", f.name))
            .collect();
        map([
            (
                "description",
                s(format!(
                    "The feature values in this order: {}.",
                    order.join(", ")
                )),
            ),
            ("type", s("array")),
            ("minItems", num(self.n() as f64)),
            ("maxItems", num(self.n() as f64)),
            (
                "prefixItems",
                Node::Seq(self.names.iter().map(|name| schema(name)).collect()),
            ),
        ])
    }

    fn object(&self) -> Node {
        let properties = self
            .features
            .iter()
            .zip(&self.names)
            .map(|(f, name)| (f.name.clone(), schema(name)));
        map([
            (
                "description",
                s("Every feature by name, exactly once; any other name is refused (422)."),
            ),
            ("type", s("object")),
            ("additionalProperties", Node::Bool(false)),
            (
                "required",
                strings(self.features.iter().map(|f| f.name.clone())),
            ),
            ("properties", map(properties)),
        ])
    }

    fn request(&self) -> Node {
        map([
            ("type", s("object")),
            ("additionalProperties", Node::Bool(false)),
            ("required", strings(["data"])),
            ("properties", map([("data", schema("FeatureRow"))])),
        ])
    }

    fn batch_request(&self) -> Node {
        let instances = map([
            ("type", s("array")),
            ("minItems", num(1.0)),
            ("maxItems", num(MAX_BATCH_ROWS as f64)),
            ("items", schema("FeatureRow")),
        ]);
        map([
            ("type", s("object")),
            ("additionalProperties", Node::Bool(false)),
            ("required", strings(["instances"])),
            ("properties", map([("instances", instances)])),
        ])
    }

    fn prediction(&self) -> Node {
        let version = map([
            ("type", s("string")),
            ("minLength", num(1.0)),
            ("examples", strings([self.model.version()])),
        ]);
        let warnings = map([
            (
                "description",
                s("One sentence per feature outside the range seen in training; empty when none."),
            ),
            ("type", s("array")),
            ("items", map([("type", s("string"))])),
        ]);
        if !self.classifier() {
            return map([
                (
                    "description",
                    s("A regressor's answer: a number, no label."),
                ),
                ("type", s("object")),
                ("additionalProperties", Node::Bool(false)),
                (
                    "required",
                    strings(["prediction", "model_version", "warnings"]),
                ),
                (
                    "properties",
                    map([
                        (
                            "prediction",
                            map([
                                ("description", s("The model's value.")),
                                ("type", s("number")),
                            ]),
                        ),
                        ("model_version", version),
                        ("warnings", warnings),
                    ]),
                ),
            ]);
        }
        let labels = self.model.manifest().labels();
        let prediction = map([
            (
                "description",
                s("Class index into the model card's `labels`."),
            ),
            ("type", s("integer")),
            ("minimum", num(0.0)),
            ("maximum", num((labels.len() - 1) as f64)),
        ]);
        let pairs = labels.iter().enumerate().map(|(index, label)| {
            map([(
                "properties",
                map([
                    ("prediction", map([("const", num(index as f64))])),
                    ("label", map([("const", s(label.as_str()))])),
                ]),
            )])
        });
        map([
            (
                "description",
                s("A classifier's answer: the class index and its label."),
            ),
            ("type", s("object")),
            ("additionalProperties", Node::Bool(false)),
            (
                "required",
                strings(["prediction", "label", "model_version", "warnings"]),
            ),
            (
                "properties",
                map([
                    ("prediction", prediction),
                    (
                        "label",
                        map([("type", s("string")), ("enum", strings(labels))]),
                    ),
                    ("model_version", version),
                    ("warnings", warnings),
                    ("probabilities", schema("Probabilities")),
                ]),
            ),
            ("oneOf", Node::Seq(pairs.collect())),
        ])
    }

    fn probabilities(&self) -> Node {
        let labels = self.model.manifest().labels();
        let score = if self.model.scores_are_probabilities() {
            map([
                ("type", s("number")),
                ("minimum", num(0.0)),
                ("maximum", num(1.0)),
            ])
        } else {
            map([("type", s("number"))])
        };
        map([
            (
                "description",
                s(
                    "The model's score for each class, in the order of `labels`: for a forest trained here the share of trees voting for it, for an imported model what its library's `predict_proba` gives. The predicted class has the largest score. Present only when the token carries `predict:proba`.",
                ),
            ),
            ("type", s("object")),
            ("additionalProperties", Node::Bool(false)),
            ("required", strings(labels)),
            (
                "properties",
                map(labels.iter().map(|label| (label.clone(), score.clone()))),
            ),
        ])
    }
}
