//! Training data: a numeric CSV with a header row and one target column.
//!
//! Every column but the target is a feature, in file order, and must hold a finite number on
//! every row. The target decides the task ([`TaskChoice::Auto`]):
//!
//! - **classification** when some target value is not a number (string labels such as
//!   `setosa`), or when every value is an integer and there are at most
//!   [`MAX_INTEGER_CLASSES`] distinct values (integer-coded labels such as `0`/`1`);
//! - **regression** otherwise (fractional values, or many distinct integers such as a count).
//!
//! [`TaskChoice::Classification`] and [`TaskChoice::Regression`] override the guess. Class
//! labels are sorted (numerically for integer labels, which are then written as decimal
//! strings; as strings otherwise), as scikit-learn orders `classes_`.

use crate::ModelError;

/// Most distinct integer target values that [`TaskChoice::Auto`] still reads as class labels.
pub const MAX_INTEGER_CLASSES: usize = 20;

/// How to read the target column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskChoice {
    /// Classification or regression, decided from the values (see the module docs).
    Auto,
    /// The target holds class labels.
    Classification,
    /// The target holds numbers to predict.
    Regression,
}

/// What the target column holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Class labels: `labels[classes[i]]` is row `i`'s label.
    Classes {
        /// Sorted distinct labels.
        labels: Vec<String>,
        /// Class index of each row.
        classes: Vec<usize>,
    },
    /// A number per row.
    Values(Vec<f64>),
}

/// Rows of features and their targets, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Feature names (the header without the target), in column order.
    pub feature_names: Vec<String>,
    /// Feature values of each row, in [`Dataset::feature_names`] order.
    pub rows: Vec<Vec<f64>>,
    /// The target of each row.
    pub target: Target,
}

impl Dataset {
    /// Parses a CSV. Strict on purpose: a silently skipped or misread row would change the model
    /// without anyone noticing. Fields are plain (no quoting); blank lines are not allowed.
    pub fn from_csv(bytes: &[u8], target: &str, task: TaskChoice) -> Result<Dataset, ModelError> {
        let data = |message: String| ModelError::Data(message);
        let text = std::str::from_utf8(bytes).map_err(|_| data("the CSV is not UTF-8".into()))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .ok_or_else(|| data("the CSV is empty".into()))?
            .trim_end()
            .split(',')
            .map(str::trim)
            .collect();
        let target_column = header
            .iter()
            .position(|name| *name == target)
            .ok_or_else(|| {
                data(format!(
                    "the header has no column `{target}` (columns: {})",
                    header.join(", ")
                ))
            })?;
        if header.len() < 2 {
            return Err(data("the CSV needs at least one feature column".into()));
        }
        let feature_names: Vec<String> = header
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != target_column)
            .map(|(_, name)| (*name).to_owned())
            .collect();
        for (i, name) in feature_names.iter().enumerate() {
            if name.is_empty() || feature_names[..i].contains(name) {
                return Err(data(format!(
                    "feature column name `{name}` is empty or repeated"
                )));
            }
        }

        let mut rows = Vec::new();
        let mut raw_targets = Vec::new();
        for (offset, line) in lines.enumerate() {
            let line_number = offset + 2;
            let fields: Vec<&str> = line.trim_end().split(',').map(str::trim).collect();
            if fields.len() != header.len() {
                return Err(data(format!(
                    "line {line_number} has {} fields, expected {}",
                    fields.len(),
                    header.len()
                )));
            }
            let mut row = Vec::with_capacity(feature_names.len());
            for (column, value) in fields.iter().enumerate() {
                if column == target_column {
                    continue;
                }
                let number = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        data(format!(
                            "line {line_number}: `{value}` (column `{}`) is not a finite number",
                            header[column]
                        ))
                    })?;
                row.push(number);
            }
            if fields[target_column].is_empty() {
                return Err(data(format!("line {line_number}: the target is empty")));
            }
            rows.push(row);
            raw_targets.push(fields[target_column]);
        }
        if rows.is_empty() {
            return Err(data("the CSV has no data rows".into()));
        }
        let target = read_target(&raw_targets, task)?;
        Ok(Dataset {
            feature_names,
            rows,
            target,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// `(min, max)` of each feature.
    pub fn feature_ranges(&self) -> Vec<(f64, f64)> {
        let mut ranges = vec![(f64::INFINITY, f64::NEG_INFINITY); self.n_features()];
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
            feature_names: self.feature_names.clone(),
            rows: indices.iter().map(|&i| self.rows[i].clone()).collect(),
            target: match &self.target {
                Target::Classes { labels, classes } => Target::Classes {
                    labels: labels.clone(),
                    classes: indices.iter().map(|&i| classes[i]).collect(),
                },
                Target::Values(values) => {
                    Target::Values(indices.iter().map(|&i| values[i]).collect())
                }
            },
        }
    }
}

fn read_target(raw: &[&str], task: TaskChoice) -> Result<Target, ModelError> {
    let numbers: Option<Vec<f64>> = raw
        .iter()
        .map(|v| v.parse::<f64>().ok().filter(|x| x.is_finite()))
        .collect();
    let integers: Option<Vec<i64>> = numbers.as_ref().and_then(|values| {
        values
            .iter()
            .map(|&x| (x.fract() == 0.0 && x.abs() < 9e15).then_some(x as i64))
            .collect()
    });
    let classification = match task {
        TaskChoice::Classification => true,
        TaskChoice::Regression => false,
        TaskChoice::Auto => match (&numbers, &integers) {
            (None, _) => true,
            (Some(_), Some(ints)) => {
                let distinct: std::collections::BTreeSet<i64> = ints.iter().copied().collect();
                distinct.len() <= MAX_INTEGER_CLASSES
            }
            (Some(_), None) => false,
        },
    };
    if !classification {
        return numbers.map(Target::Values).ok_or_else(|| {
            ModelError::Data("a regression target must be a finite number on every row".into())
        });
    }
    let labels: Vec<String> = match &integers {
        Some(ints) => {
            let distinct: std::collections::BTreeSet<i64> = ints.iter().copied().collect();
            distinct.iter().map(i64::to_string).collect()
        }
        None => {
            let distinct: std::collections::BTreeSet<&str> = raw.iter().copied().collect();
            distinct.iter().map(|s| (*s).to_owned()).collect()
        }
    };
    if labels.len() < 2 {
        return Err(ModelError::Data(
            "a classification target needs at least two distinct labels".into(),
        ));
    }
    let classes = match &integers {
        Some(ints) => ints
            .iter()
            .map(|i| labels.iter().position(|l| *l == i.to_string()).unwrap_or(0))
            .collect(),
        None => raw
            .iter()
            .map(|v| labels.iter().position(|l| l == v).unwrap_or(0))
            .collect(),
    };
    Ok(Target::Classes { labels, classes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IRIS_CSV: &[u8] = include_bytes!("../../../model-artifacts/iris.csv");
    const IRIS_LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

    fn iris() -> Dataset {
        Dataset::from_csv(IRIS_CSV, "species", TaskChoice::Auto).unwrap()
    }

    fn iris_classes(data: &Dataset) -> (&[String], &[usize]) {
        match &data.target {
            Target::Classes { labels, classes } => (labels, classes),
            Target::Values(_) => panic!("iris is a classification data set"),
        }
    }

    #[test]
    fn iris_csv_has_150_rows_50_per_species_in_four_features() {
        let data = iris();
        assert_eq!(data.len(), 150);
        assert_eq!(
            data.feature_names,
            ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        );
        let (labels, classes) = iris_classes(&data);
        assert_eq!(labels, IRIS_LABELS);
        for class in 0..3 {
            assert_eq!(classes.iter().filter(|&&c| c == class).count(), 50);
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
        let (_, classes) = iris_classes(&data);
        for (class, means) in expected.iter().enumerate() {
            for (feature, &mean) in means.iter().enumerate() {
                let values: Vec<f64> = data
                    .rows
                    .iter()
                    .zip(classes)
                    .filter(|(_, c)| **c == class)
                    .map(|(row, _)| row[feature])
                    .collect();
                let actual = values.iter().sum::<f64>() / values.len() as f64;
                assert!(
                    (actual - mean).abs() < 1e-9,
                    "{} mean of feature {feature}: {actual} != {mean}",
                    IRIS_LABELS[class]
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
        let (_, classes) = iris_classes(&ours);
        assert_eq!(theirs.num_samples, ours.len());
        assert_eq!(theirs.num_features, 4);

        let mut differing = Vec::new();
        for (i, (row, &label)) in ours.rows.iter().zip(classes).enumerate() {
            assert_eq!(theirs.target[i] as usize, label, "label of row {}", i + 1);
            let their_row = &theirs.data[i * 4..(i + 1) * 4];
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
            ("a,b,c\n1,2,3\n", "no column `y`"),
            ("a,b,y\n", "no data rows"),
            ("a,b,y\n1,2\n", "line 2"),
            ("a,b,y\n1,NaN,x\n", "line 2"),
            ("a,b,y\n1,2,x\n1,2,\n", "line 3"),
        ];
        for (csv, needle) in cases {
            let err = Dataset::from_csv(csv.as_bytes(), "y", TaskChoice::Auto)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "`{err}` should mention {needle}");
        }
    }

    #[test]
    fn the_task_is_classification_for_labels_and_few_integers_and_regression_otherwise() {
        let csv = |target: &str| format!("x,y\n1,{target}\n2,1\n3,2\n");
        let read = |csv: String| {
            Dataset::from_csv(csv.as_bytes(), "y", TaskChoice::Auto)
                .unwrap()
                .target
        };
        assert_eq!(
            read(csv("0")),
            Target::Classes {
                labels: vec!["0".into(), "1".into(), "2".into()],
                classes: vec![0, 1, 2]
            }
        );
        assert!(matches!(read(csv("0.5")), Target::Values(_)));
        assert!(matches!(read(csv("cat")), Target::Classes { .. }));
        let many: String = (0..=MAX_INTEGER_CLASSES)
            .map(|i| format!("{i},{i}\n"))
            .collect();
        assert!(matches!(read(format!("x,y\n{many}")), Target::Values(_)));
        // Integer labels sort numerically, not as strings.
        let ten = Dataset::from_csv(b"x,y\n1,10\n2,9\n", "y", TaskChoice::Auto).unwrap();
        assert_eq!(
            ten.target,
            Target::Classes {
                labels: vec!["9".into(), "10".into()],
                classes: vec![1, 0]
            }
        );
    }
}
