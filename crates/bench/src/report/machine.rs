//! The machine the run measured on, and how the functions ran there.
//!
//! The conditions differ from AWS in ways that move the figures, which is why the section
//! states them: on arm64 at 128 MB (about 1/14 of a vCPU) the CPU-bound parts run several
//! times slower than on a full x86 core; the DynamoDB round trip is a network hop with TLS
//! instead of plain HTTP on loopback, so a process's first call also pays a handshake (the
//! cold-start section that adds TLS and the CPU share measures that part); and
//! `cargo lambda` builds with `panic = "abort"`, the host release build does not.

use std::fmt::Write as _;

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.strip_prefix(prefix)
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
    })
}

fn run(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// The `## Machine` section; `build` is the command that built the measured binaries.
pub fn write(out: &mut String, build: &str) {
    let _ = writeln!(out, "## Machine\n");
    table(out);
    let _ = writeln!(
        out,
        "\nFunctions ran as **x86_64 host release builds** (`{build}`) under the harness's Runtime API, \
         against DynamoDB Local (in-memory, Java) on the same machine: over plain HTTP on loopback \
         on a whole core, except in *Cold start as AWS sees it*, which adds TLS and a 128 MB \
         function's CPU share. The deployed functions are **arm64** builds at 128 MB (about 1/14 \
         of a vCPU) reaching DynamoDB over TLS; only the zip sizes below are of those arm64 \
         artifacts.\n"
    );
}

fn table(out: &mut String) {
    let nproc = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpu = first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let memory = first_line_with("/proc/meminfo", "MemTotal")
        .and_then(|m| {
            m.split_whitespace()
                .next()
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(
        out,
        "| nproc | CPU | memory | rustc | kernel | date (UTC) | load average at report time |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {nproc} | {cpu} | {memory} | {} | {} | {} | {} |",
        run("rustc", &["--version"]),
        kernel.trim(),
        run("date", &["-u", "+%Y-%m-%d %H:%M"]),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
}
