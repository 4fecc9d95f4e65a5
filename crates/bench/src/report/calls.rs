//! DynamoDB calls per request, counted by a proxy: one summary row (how many cases made the
//! calls the SPEC's cost table says) and the table of cases.

use std::fmt::Write as _;

use super::format::{NONE, code};
use super::summary::{Row, Verdict};
use super::{Inputs, Section};
use crate::results::Calls;

pub(super) fn section(inputs: &Inputs<'_>) -> Section {
    let Some(calls) = &inputs.calls else {
        return Section::default();
    };
    Section {
        rows: vec![row(calls)],
        details: details(calls),
    }
}

fn row(c: &Calls) -> Row {
    let matching = c
        .rows
        .iter()
        .filter(|r| r.counts.calls() == r.expected_calls)
        .count();
    Row {
        stage: "DynamoDB calls per request (SPEC §3 cost table)".to_owned(),
        measured: format!("{matching}/{} cases as specified (see below)", c.rows.len()),
        floor: "admitted: 1 write; refused again: 0".to_owned(),
        ratio: None,
        ranked: false,
        excess_ms: None,
        target: "as specified in every case".to_owned(),
        verdict: Verdict::of(matching == c.rows.len()),
        command: code(&c.command),
    }
}

fn details(c: &Calls) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## DynamoDB calls per request\n");
    let _ = writeln!(
        out,
        "Counted by a proxy between the functions and DynamoDB Local (`X-Amz-Target` of each \
         request; `ConditionalCheckFailedException` in each response). Two predict instances \
         A and B share the table like two Lambda instances; policy {}. Command: {}.\n",
        c.policy,
        code(&c.command)
    );
    let _ = writeln!(
        out,
        "| case | instance | status | UpdateItem | of which condition failed | GetItem | other | expected | as expected |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for r in &c.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.case,
            r.instance,
            r.status.map_or(NONE.into(), |s| s.to_string()),
            r.counts.update_item,
            r.counts.condition_failed,
            r.counts.get_item,
            r.counts.other,
            r.expected,
            if r.counts.calls() == r.expected_calls {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    out
}
