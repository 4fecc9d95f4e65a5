//! The summary table: one row per figure, from every section, and the three lines under it
//! (largest ratio to a floor, largest absolute cost above a floor, targets missed).

use std::fmt::Write as _;

use super::format::{NONE, ms, times};

/// How a figure fares against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// The figure has no target.
    NoTarget,
}

impl Verdict {
    pub fn of(met: bool) -> Self {
        if met { Self::Met } else { Self::Missed }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Met => "met",
            Self::Missed => "**missed**",
            Self::NoTarget => NONE,
        })
    }
}

/// One line of the summary table.
pub struct Row {
    pub stage: String,
    pub measured: String,
    pub floor: String,
    /// Measured over floor.
    pub ratio: Option<f64>,
    /// Whether the row competes for the largest ratio to its floor: false where the ratio is
    /// not a slowdown (a cost over its fixed part, a size).
    pub ranked: bool,
    /// How far above its floor, in ms (time rows only): picks the costliest stage.
    pub excess_ms: Option<f64>,
    pub target: String,
    pub verdict: Verdict,
    pub command: String,
}

/// The `## Summary` section.
pub fn write(out: &mut String, rows: &[&Row]) {
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(
        out,
        "| stage | measured | floor (same run) | ratio | target | verdict | command |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.stage,
            r.measured,
            r.floor,
            times(r.ratio),
            r.target,
            r.verdict,
            r.command
        );
    }
    largest_ratio(out, rows);
    largest_excess(out, rows);
    missed(out, rows);
}

fn largest_ratio(out: &mut String, rows: &[&Row]) {
    let slowest = rows
        .iter()
        .filter(|r| r.ranked)
        .filter_map(|r| r.ratio.map(|x| (x, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((x, r)) = slowest {
        let _ = writeln!(
            out,
            "\nLargest ratio to its floor: **{}** at {x:.2}× ({} against {}).",
            r.stage, r.measured, r.floor
        );
    }
}

fn largest_excess(out: &mut String, rows: &[&Row]) {
    let costliest = rows
        .iter()
        .filter_map(|r| r.excess_ms.map(|e| (e, r)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((e, r)) = costliest {
        let _ = writeln!(
            out,
            "\nLargest absolute cost above its floor: **{}**, {} more ({} against {}).",
            r.stage,
            ms(e),
            r.measured,
            r.floor
        );
    }
}

fn missed(out: &mut String, rows: &[&Row]) {
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Missed)
        .map(|r| r.stage.as_str())
        .collect();
    let _ = writeln!(
        out,
        "\nTargets missed: {}.",
        if missed.is_empty() {
            "none".to_owned()
        } else {
            missed.join("; ")
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(stage: &str, ratio: f64, ranked: bool, verdict: Verdict) -> Row {
        Row {
            stage: stage.to_owned(),
            measured: "m".to_owned(),
            floor: "f".to_owned(),
            ratio: Some(ratio),
            ranked,
            excess_ms: Some(ratio),
            target: "t".to_owned(),
            verdict,
            command: "c".to_owned(),
        }
    }

    #[test]
    fn the_largest_ratio_ignores_unranked_rows() {
        let rows = [
            row("warm", 1.5, true, Verdict::Met),
            row("cost", 9.0, false, Verdict::NoTarget),
        ];
        let mut out = String::new();
        largest_ratio(&mut out, &rows.iter().collect::<Vec<_>>());
        assert_eq!(
            out,
            "\nLargest ratio to its floor: **warm** at 1.50× (m against f).\n"
        );
    }

    #[test]
    fn only_missed_targets_are_listed_as_missed() {
        let rows = [
            row("a", 1.0, true, Verdict::Met),
            row("b", 1.0, true, Verdict::Missed),
            row("c", 1.0, true, Verdict::NoTarget),
            row("d", 1.0, true, Verdict::Missed),
        ];
        let mut out = String::new();
        missed(&mut out, &rows.iter().collect::<Vec<_>>());
        assert_eq!(out, "\nTargets missed: b; d.\n");
    }
}
