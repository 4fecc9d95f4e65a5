//! `BENCHMARKS.md`: every figure next to its floor from the same run, its target, and the
//! command that produced it. Targets are reported as met or missed; nothing here fails.
//!
//! Layout: [`write`] reads what the scenarios wrote ([`Inputs`]) and asks each section in
//! [`SECTIONS`] for its [`Section`]: its rows of the summary table and the details printed
//! below it. The page is the header, [`machine`], [`summary`] (every section's rows, in the
//! order of [`SECTIONS`]), then each section's details in the same order. Every section module
//! has the same shape, `fn section(&Inputs) -> Section`, so a new measurement is one more file
//! and one more entry in [`SECTIONS`]. Number formatting lives in [`format`].
//!
//! Why floors: the benchmarks run on a shared, noisy machine, where absolute times move from
//! run to run; a figure divided by a floor measured in the same run on the same machine moves
//! far less, so the ratios are the numbers to compare between runs. Benchmarks report, they
//! never fail a build: a missed target is a verdict in the table, not an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::rejections::Rejections;
use crate::results::{self, Calls, ColdStart, FreshProcess, ModelBench, Warm};

mod calls;
mod coldstart;
mod coldstart_aws;
mod cost;
mod cpu;
mod format;
mod machine;
mod models;
mod prices;
mod sizes;
mod summary;
mod template;
mod warm;
mod worst_case;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory the scenarios wrote their JSON results to.
    #[arg(long)]
    results: PathBuf,
    /// criterion's output directory (`CRITERION_HOME` of the `cargo bench` runs).
    #[arg(long)]
    criterion: Option<PathBuf>,
    /// `target/lambda` of the arm64 `cargo lambda build`.
    #[arg(long)]
    lambda_dir: PathBuf,
    /// The x86_64 release binaries the harness ran.
    #[arg(long)]
    release_dir: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// The commands bench.sh ran, as `name=command` (build, zip, criterion-core, ...).
    #[arg(long = "command", value_parser = parse_pair)]
    commands: Vec<(String, String)>,
    /// Seconds the whole bench.sh run took so far.
    #[arg(long)]
    elapsed: Option<String>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected name=command, got {s:?}"))
}

impl Args {
    /// The command bench.sh ran under `name`, `—` when it did not say.
    fn command(&self, name: &str) -> String {
        self.commands
            .iter()
            .find(|(k, _)| k == name)
            .map_or_else(|| "—".to_owned(), |(_, v)| v.clone())
    }
}

/// Everything a section may read: the arguments and the scenarios' results, each read once.
/// A scenario that did not run (or wrote an unreadable file) is `None`; the rows that need it
/// are left out.
pub(super) struct Inputs<'a> {
    args: &'a Args,
    cold_predict: Option<ColdStart>,
    cold_token: Option<ColdStart>,
    cold_null: Option<ColdStart>,
    fresh_process: Option<FreshProcess>,
    warm_predict: Option<Warm>,
    warm_token: Option<Warm>,
    calls: Option<Calls>,
    /// Every cold-start series, by the name after `coldstart-` (`predict-tls-cpu128`, ...).
    coldstarts: BTreeMap<String, ColdStart>,
    /// Every fresh-process floor, by its conditions' suffix without the dash (`""`, `tls`, ...).
    fresh: BTreeMap<String, FreshProcess>,
    rejections: Option<Rejections>,
    /// Why no cold start could run under a Lambda CPU share on this machine, if so.
    cpu_share_unavailable: Option<serde_json::Value>,
    /// Large models next to onnxruntime (`scripts/model_bench.sh`).
    model_bench: Option<ModelBench>,
}

impl<'a> Inputs<'a> {
    fn read(args: &'a Args) -> Self {
        let dir = &args.results;
        Self {
            args,
            cold_predict: results::read(dir, "coldstart-predict"),
            cold_token: results::read(dir, "coldstart-token"),
            cold_null: results::read(dir, "coldstart-null"),
            fresh_process: results::read(dir, "fresh-process"),
            warm_predict: results::read(dir, "warm-predict"),
            warm_token: results::read(dir, "warm-token"),
            calls: results::read(dir, "calls"),
            coldstarts: read_all(dir, "coldstart-"),
            fresh: read_all(dir, "fresh-process")
                .into_iter()
                .map(|(k, v)| (k.trim_start_matches('-').to_owned(), v))
                .collect(),
            rejections: results::read(dir, "rejections"),
            cpu_share_unavailable: results::read(dir, "cpu-share-unavailable"),
            model_bench: results::read(dir, "model-bench"),
        }
    }

    fn criterion(&self) -> Option<&Path> {
        self.args.criterion.as_deref()
    }
}

/// Every `<prefix><name>.json` in `dir`, by `<name>`.
fn read_all<T: serde::de::DeserializeOwned>(dir: &Path, prefix: &str) -> BTreeMap<String, T> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| Some(f.strip_suffix(".json")?.strip_prefix(prefix)?.to_owned()))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            Some((
                name.clone(),
                results::read(dir, &format!("{prefix}{name}"))?,
            ))
        })
        .collect()
}

/// What one section contributes to the page.
#[derive(Default)]
pub(super) struct Section {
    /// Its rows of the summary table.
    rows: Vec<summary::Row>,
    /// Markdown printed after the summary (empty when the section has none).
    details: String,
}

/// The sections, in the order of the page and of the summary table's rows.
const SECTIONS: [fn(&Inputs<'_>) -> Section; 9] = [
    coldstart::section,
    coldstart_aws::section,
    warm::section,
    cpu::section,
    models::section,
    sizes::section,
    calls::section,
    cost::section,
    worst_case::section,
];

pub fn write(args: &Args) -> Result<(), Error> {
    let inputs = Inputs::read(args);
    let sections: Vec<Section> = SECTIONS.iter().map(|section| section(&inputs)).collect();
    let rows: Vec<&summary::Row> = sections.iter().flat_map(|s| &s.rows).collect();

    let mut out = String::new();
    header(&mut out, args);
    machine::write(&mut out, &args.command("build"));
    summary::write(&mut out, &rows);
    for section in &sections {
        out.push_str(&section.details);
    }

    std::fs::write(&args.out, out)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn header(out: &mut String, args: &Args) {
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `scripts/bench.sh` (`make bench`) in one run{}; do not edit by hand. Every figure \
         sits next to a floor measured in the same run on the same machine, and next to its target \
         with a verdict where it has one.\n",
        args.elapsed
            .as_ref()
            .map_or(String::new(), |e| format!(" ({e})"))
    );
}
