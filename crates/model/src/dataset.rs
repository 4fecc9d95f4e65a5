//! The Iris CSV: parsing and per-feature ranges.

use crate::{LABELS, ModelError, N_FEATURES};

/// The exact header `iris.csv` must have: feature names in request order, then the label.
pub const CSV_HEADER: &str = "sepal_length,sepal_width,petal_length,petal_width,species";

/// Labelled rows, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Feature values in cm, in [`crate::FEATURE_NAMES`] order.
    pub rows: Vec<[f64; N_FEATURES]>,
    /// Class index of each row (into [`crate::LABELS`]).
    pub labels: Vec<usize>,
}

impl Dataset {
    /// Parses `iris.csv`: the [`CSV_HEADER`] line, then one row per line with four finite
    /// numbers and a label from [`crate::LABELS`]. Strict on purpose: a silently skipped or
    /// misread row would change the model without anyone noticing.
    pub fn from_csv(bytes: &[u8]) -> Result<Dataset, ModelError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ModelError::Data("the CSV is not UTF-8".to_owned()))?;
        let mut lines = text.lines();
        match lines.next() {
            Some(header) if header.trim_end() == CSV_HEADER => {}
            _ => {
                return Err(ModelError::Data(format!(
                    "the first line must be `{CSV_HEADER}`"
                )));
            }
        }

        let mut data = Dataset {
            rows: Vec::new(),
            labels: Vec::new(),
        };
        for (offset, line) in lines.enumerate() {
            let line_number = offset + 2;
            let fields: Vec<&str> = line.trim_end().split(',').collect();
            let Some((label, values)) = fields.split_last().filter(|(_, v)| v.len() == N_FEATURES)
            else {
                return Err(ModelError::Data(format!(
                    "line {line_number} has {} fields, expected {}",
                    fields.len(),
                    N_FEATURES + 1
                )));
            };
            let mut row = [0.0; N_FEATURES];
            for (slot, value) in row.iter_mut().zip(values) {
                *slot = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        ModelError::Data(format!(
                            "line {line_number}: `{value}` is not a finite number"
                        ))
                    })?;
            }
            let class = LABELS.iter().position(|l| l == label).ok_or_else(|| {
                ModelError::Data(format!("line {line_number}: unknown species `{label}`"))
            })?;
            data.rows.push(row);
            data.labels.push(class);
        }
        if data.rows.is_empty() {
            return Err(ModelError::Data("the CSV has no data rows".to_owned()));
        }
        Ok(data)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// `(min, max)` of each feature.
    pub fn feature_ranges(&self) -> [(f64, f64); N_FEATURES] {
        let mut ranges = [(f64::INFINITY, f64::NEG_INFINITY); N_FEATURES];
        for row in &self.rows {
            for ((min, max), &value) in ranges.iter_mut().zip(row) {
                *min = min.min(value);
                *max = max.max(value);
            }
        }
        ranges
    }

    /// The rows at `indices`, in that order (repeats allowed).
    pub(crate) fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            rows: indices.iter().map(|&i| self.rows[i]).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IRIS_CSV: &[u8] = include_bytes!("../../../model-artifacts/iris.csv");

    fn iris() -> Dataset {
        Dataset::from_csv(IRIS_CSV).unwrap()
    }

    #[test]
    fn iris_csv_has_150_rows_50_per_species() {
        let data = iris();
        assert_eq!(data.len(), 150);
        for class in 0..LABELS.len() {
            assert_eq!(data.labels.iter().filter(|&&l| l == class).count(), 50);
        }
    }

    /// Per-class means of Fisher's data as published in R's `iris` and scikit-learn's
    /// `load_iris` (two UCI transcription errors corrected, see the crate docs).
    #[test]
    fn iris_csv_has_the_well_known_per_class_means() {
        let expected = [
            [5.006, 3.428, 1.462, 0.246],
            [5.936, 2.770, 4.260, 1.326],
            [6.588, 2.974, 5.552, 2.026],
        ];
        let data = iris();
        for (class, means) in expected.iter().enumerate() {
            for (feature, &mean) in means.iter().enumerate() {
                let values: Vec<f64> = data
                    .rows
                    .iter()
                    .zip(&data.labels)
                    .filter(|(_, l)| **l == class)
                    .map(|(row, _)| row[feature])
                    .collect();
                let actual = values.iter().sum::<f64>() / values.len() as f64;
                assert!(
                    (actual - mean).abs() < 1e-9,
                    "{} mean of feature {feature}: {actual} != {mean}",
                    LABELS[class]
                );
            }
        }
    }

    #[test]
    fn iris_csv_has_the_well_known_feature_ranges() {
        assert_eq!(
            iris().feature_ranges(),
            [(4.3, 7.9), (2.0, 4.4), (1.0, 6.9), (0.1, 2.5)]
        );
    }

    /// smartcore ships the UCI file, which differs from Fisher's published table in exactly
    /// two setosa rows (UCI's own notes list them); every other value must match.
    #[test]
    fn iris_csv_matches_smartcores_copy_except_the_two_documented_uci_errors() {
        let theirs = smartcore::dataset::iris::load_dataset();
        let ours = iris();
        assert_eq!(theirs.num_samples, ours.len());
        assert_eq!(theirs.num_features, N_FEATURES);

        let mut differing = Vec::new();
        for (i, (row, &label)) in ours.rows.iter().zip(&ours.labels).enumerate() {
            assert_eq!(theirs.target[i] as usize, label, "label of row {}", i + 1);
            let their_row = &theirs.data[i * N_FEATURES..(i + 1) * N_FEATURES];
            if row
                .iter()
                .zip(their_row)
                .any(|(&a, &b)| (a - f64::from(b)).abs() > 1e-6)
            {
                differing.push(i + 1);
            }
        }
        assert_eq!(differing, vec![35, 38]);
        // Fisher's values for those rows (UCI has 4.9,3.1,1.5,0.1 for both).
        assert_eq!(ours.rows[34], [4.9, 3.1, 1.5, 0.2]);
        assert_eq!(ours.rows[37], [4.9, 3.6, 1.4, 0.1]);
    }

    #[test]
    fn malformed_csv_is_rejected_with_the_line_number() {
        let cases: [(&str, &str); 5] = [
            ("a,b,c\n", "first line"),
            (
                "sepal_length,sepal_width,petal_length,petal_width,species\n",
                "no data rows",
            ),
            (
                "sepal_length,sepal_width,petal_length,petal_width,species\n1,2,3,setosa\n",
                "line 2",
            ),
            (
                "sepal_length,sepal_width,petal_length,petal_width,species\n1,2,3,NaN,setosa\n",
                "line 2",
            ),
            (
                "sepal_length,sepal_width,petal_length,petal_width,species\n1,2,3,4,setosa\n1,2,3,4,rose\n",
                "line 3",
            ),
        ];
        for (csv, needle) in cases {
            let err = Dataset::from_csv(csv.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "`{err}` should mention {needle}");
        }
    }
}
