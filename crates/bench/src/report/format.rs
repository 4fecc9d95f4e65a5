//! How the report prints numbers: three significant figures or so, units spelled out, and `—`
//! where there is nothing to print.

use crate::stats::Summary;

/// What a cell shows when it has no value.
pub const NONE: &str = "—";

/// About three significant figures, never in scientific notation.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

pub fn ms(x: f64) -> String {
    format!("{} ms", num(x))
}

pub fn us(ns: f64) -> String {
    format!("{} µs", num(ns / 1e3))
}

pub fn mib(kib: f64) -> String {
    format!("{} MiB", num(kib / 1024.0))
}

pub fn mb(bytes: u64) -> String {
    format!("{} MB", num(bytes as f64 / 1e6))
}

/// A series in milliseconds: its median, then its spread.
pub fn spread_ms(s: &Summary) -> String {
    format!(
        "p50 {} (min {} · p90 {} · max {}; n={})",
        ms(s.p50),
        num(s.min),
        num(s.p90),
        num(s.max),
        s.n
    )
}

/// `a / b`, when `b` is a floor one can divide by.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// A ratio as the report prints it (`1.31×`).
pub fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| NONE.to_owned(), |r| format!("{r:.2}×"))
}

/// `s` as inline code in a table cell.
pub fn code(s: &str) -> String {
    format!("`{}`", s.replace('`', "'").replace('|', "\\|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_about_three_significant_figures() {
        let printed: Vec<String> = [1234.4, 12.34, 1.234, 0.1234].map(num).into();
        assert_eq!(printed, ["1234", "12.3", "1.23", "0.123"]);
    }

    #[test]
    fn a_ratio_needs_a_positive_floor() {
        assert_eq!(times(ratio(3.0, 2.0)), "1.50×");
        assert_eq!(times(ratio(3.0, 0.0)), "—");
    }

    #[test]
    fn code_cells_cannot_break_the_table() {
        assert_eq!(code("a|b`c"), "`a\\|b'c`");
    }
}
