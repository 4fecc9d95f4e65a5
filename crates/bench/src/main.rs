//! `smla-bench`: the benchmark harness behind `scripts/bench.sh` (`make bench`).
//!
//! Layout:
//! - [`runtime_api`]: a fake Lambda Runtime API; the harness plays the Lambda service for the
//!   release binaries, so cold starts and invocations are timed where Lambda times them.
//! - [`function`]: function processes (Lambda's environment, captured logs, peak RSS from
//!   `/proc`) and the `null-function`, the floor any function is compared with.
//! - [`raw`]: DynamoDB calls made by the harness itself: the floors.
//! - [`conditions`]: how a cold start reaches DynamoDB ([`tls`]: behind TLS, as on AWS) and
//!   how much CPU it gets ([`cpu_share`]: a Lambda memory size's share, through a cgroup).
//! - [`instant`]: an endpoint that answers every DynamoDB call at once (the SDK's own cost).
//! - [`proxy`]: a counting proxy in front of DynamoDB Local (calls per request).
//! - [`rejections`]: what anonymous requests cost (the worst case at the gateway's throttle).
//! - [`scenarios`]: cold start, fresh-process DynamoDB floor, warm, calls; each writes one JSON
//!   result.
//! - [`gateway`]: API Gateway's HTTP API in front of function processes (any launcher, e.g.
//!   qemu-user for the arm64 `bootstrap` files), so `scripts/smoke.sh` can drive them.
//! - [`report`]: turns the results, criterion's estimates and the artifact sizes into
//!   `BENCHMARKS.md`.
//!
//! The harness reports; it never fails because a target was missed. It fails only when it
//! cannot measure (a function that does not start, a DynamoDB Local that does not answer).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod conditions;
mod cpu_share;
mod events;
mod function;
mod gateway;
mod http1;
mod instant;
mod proxy;
mod raw;
mod rejections;
mod report;
mod results;
mod runtime_api;
mod scenarios;
mod stack;
mod stats;
mod tls;

/// Errors of a measuring tool: a message is all anyone needs.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(
    name = "smla-bench",
    about = "Benchmarks of secure-ml-api (run through scripts/bench.sh), and the gateway that `make deploy-checks` runs the arm64 builds behind."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Cold starts: fresh processes of one function, init + first + second invocation + peak RSS.
    Coldstart {
        #[arg(long)]
        function: function::Kind,
        /// The release binary (not needed for `null`).
        #[arg(long)]
        binary: Option<PathBuf>,
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Variant binaries measured alongside, runs alternating: `LABEL=PATH`, e.g.
        /// `predict-patched=/tmp/patched/target/release/predict` (result `coldstart-LABEL`).
        #[arg(long = "variant", value_parser = parse_variant)]
        variants: Vec<(String, PathBuf)>,
        /// The `POST /predict` body of a variant built with another model, as `LABEL=FILE`
        /// (a JSON file), e.g. `predict-gbm=target/model-bench/gbm-predict.json`; the others
        /// send `events/predict.json`'s Iris row.
        #[arg(long = "request", value_parser = parse_variant)]
        requests: Vec<(String, PathBuf)>,
        #[command(flatten)]
        conditions: ConditionArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// The DynamoDB floor of a cold start: fresh processes that build the SDK client as the
    /// functions do and time two rate-limit writes.
    FreshProcess {
        #[arg(long, default_value_t = 20)]
        runs: usize,
        #[command(flatten)]
        conditions: ConditionArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Joins the cgroup whose `cgroup.procs` is given, then becomes the command (the launcher
    /// of a function under a CPU share).
    #[command(hide = true)]
    CgroupExec {
        #[arg(long)]
        procs: PathBuf,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// One fresh process: build the SDK client, time two writes; prints one JSON line.
    #[command(hide = true)]
    FreshProcessRun {
        #[arg(long)]
        key_prefix: String,
    },
    /// Warm invocations of one long-lived process next to the raw DynamoDB floor.
    Warm {
        #[arg(long)]
        function: function::Kind,
        #[arg(long)]
        binary: PathBuf,
        #[arg(long, default_value_t = 2000)]
        invocations: usize,
        #[arg(long, default_value_t = 100)]
        warmup: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// DynamoDB calls per request through a counting proxy.
    Calls {
        #[arg(long)]
        predict: PathBuf,
        #[arg(long)]
        token: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// What anonymous requests cost: forged tokens, unknown paths, bad bodies, wrong client
    /// credentials, each from a new source IP, with their DynamoDB calls counted.
    Rejections {
        #[arg(long)]
        predict: PathBuf,
        #[arg(long)]
        token: PathBuf,
        #[arg(long, default_value_t = 200)]
        requests: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Warms DynamoDB Local's JVM (JIT) with the calls the scenarios make, so that the first
    /// scenario does not pay for it.
    WarmupDynamodb {
        #[arg(long, default_value_t = 3000)]
        calls: usize,
    },
    /// A Runtime API client that does nothing (the floor).
    #[command(hide = true)]
    NullFunction,
    /// `lambda_runtime` with a handler that does nothing (the Rust runtime's own cost).
    #[command(hide = true)]
    RuntimeNullFunction,
    /// Writes BENCHMARKS.md from the results.
    Report(report::Args),
    /// Serves the functions over HTTP as API Gateway's HTTP API does (`make deploy-checks`
    /// runs the arm64 builds through it under qemu-user). Measures nothing.
    Gateway(gateway::Args),
}

/// How a cold-start series reaches DynamoDB and how much CPU it gets (see [`conditions`]).
#[derive(Debug, clap::Args)]
struct ConditionArgs {
    /// DynamoDB Local behind a TLS terminator with a throwaway CA the function trusts through
    /// `SSL_CERT_FILE`.
    #[arg(long)]
    tls: bool,
    /// Run the function processes with the CPU share of a Lambda function of this many MB
    /// (a cgroup quota of MB/1769 of a core).
    #[arg(long)]
    cpu_share_mb: Option<u32>,
}

impl ConditionArgs {
    /// The conditions, or `None` when this machine cannot give a process a CPU share: then
    /// the reason is written to `cpu-share-unavailable.json` for the report, and nothing is
    /// measured (a measurement without the share would be mislabelled).
    async fn set_up(
        &self,
        stack: &stack::Stack,
        out: &std::path::Path,
    ) -> Result<Option<conditions::Conditions>, Error> {
        if let Some(mb) = self.cpu_share_mb
            && let Err(reason) = cpu_share::CpuShare::create(mb)
        {
            eprintln!("smla-bench: no CPU share here: {reason}");
            let reason = serde_json::json!({ "reason": reason.to_string() });
            results::write(out, "cpu-share-unavailable", &reason)?;
            return Ok(None);
        }
        let dir = out.join("tls");
        conditions::Conditions::set_up(stack, self.tls, self.cpu_share_mb, &dir)
            .await
            .map(Some)
    }
}

fn parse_variant(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((label, path)) if !label.is_empty() && !path.is_empty() => {
            Ok((label.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("expected LABEL=PATH, got {s:?}")),
    }
}

/// The binaries of a cold-start series: the function's, then each variant with its request
/// body if `requests` gives one. A request for no variant is an error (a mistyped label would
/// otherwise send the Iris row to another model).
fn cold_binaries(
    function: function::Kind,
    binary: PathBuf,
    variants: Vec<(String, PathBuf)>,
    requests: &[(String, PathBuf)],
) -> Result<Vec<scenarios::ColdBinary>, Error> {
    if let Some((label, _)) = requests
        .iter()
        .find(|(label, _)| !variants.iter().any(|(v, _)| v == label))
    {
        return Err(format!("--request {label}=...: no --variant is labelled {label}").into());
    }
    let mut binaries = vec![scenarios::ColdBinary {
        label: function.name().to_owned(),
        path: binary,
        predict_body: None,
    }];
    for (label, path) in variants {
        let predict_body = match requests.iter().find(|(l, _)| *l == label) {
            Some((_, file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
            ),
            None => None,
        };
        binaries.push(scenarios::ColdBinary {
            label,
            path,
            predict_body,
        });
    }
    Ok(binaries)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // No async runtime here: the floor must carry nothing a function would not.
        Command::NullFunction => function::run_null_function(),
        Command::CgroupExec { procs, command } => cpu_share::exec_in(&procs, &command),
        Command::RuntimeNullFunction => function::run_runtime_null_function(),
        command => tokio::runtime::Runtime::new()
            .map_err(Error::from)
            .and_then(|rt| rt.block_on(run(command))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("smla-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Coldstart {
            function,
            binary,
            runs,
            variants,
            requests,
            conditions,
            out,
        } => {
            let stack = stack::Stack::from_env()?;
            let binary = match (function, binary) {
                (function::Kind::Null | function::Kind::RuntimeNull, _) => std::env::current_exe()?,
                (_, Some(binary)) => binary,
                (_, None) => return Err("--binary is required".into()),
            };
            let binaries = cold_binaries(function, binary, variants, &requests)?;
            let Some(conditions) = conditions.set_up(&stack, &out).await? else {
                return Ok(());
            };
            let results = scenarios::coldstart(
                &stack,
                function,
                &binaries,
                runs,
                &conditions,
                &out.join("logs"),
            )
            .await?;
            let suffix = conditions.suffix();
            for result in &results {
                results::write(
                    &out,
                    &format!("coldstart-{}{suffix}", result.function),
                    result,
                )?;
            }
            Ok(())
        }
        Command::FreshProcess {
            runs,
            conditions,
            out,
        } => {
            let stack = stack::Stack::from_env()?;
            let Some(conditions) = conditions.set_up(&stack, &out).await? else {
                return Ok(());
            };
            let result = scenarios::fresh_process(&stack, runs, &conditions).await?;
            results::write(
                &out,
                &format!("fresh-process{}", conditions.suffix()),
                &result,
            )
        }
        Command::FreshProcessRun { key_prefix } => {
            let result = scenarios::fresh_process_run(&key_prefix).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Command::Warm {
            function,
            binary,
            invocations,
            warmup,
            out,
        } => {
            let stack = stack::Stack::from_env()?;
            let logs = out.join("logs");
            let result = match function {
                function::Kind::Predict => {
                    scenarios::warm_predict(&stack, &binary, invocations, warmup, &logs).await?
                }
                function::Kind::Token => {
                    scenarios::warm_token(&stack, &binary, invocations, warmup, &logs).await?
                }
                function::Kind::Null | function::Kind::RuntimeNull => {
                    return Err("warm runs the null functions alongside predict".into());
                }
            };
            results::write(&out, &format!("warm-{}", function.name()), &result)
        }
        Command::Calls {
            predict,
            token,
            out,
        } => {
            let stack = stack::Stack::from_env()?;
            let result = scenarios::calls(&stack, &predict, &token, &out.join("logs")).await?;
            results::write(&out, "calls", &result)
        }
        Command::Rejections {
            predict,
            token,
            requests,
            out,
        } => {
            let stack = stack::Stack::from_env()?;
            let result =
                rejections::run(&stack, &predict, &token, requests, &out.join("logs")).await?;
            results::write(&out, "rejections", &result)
        }
        Command::WarmupDynamodb { calls } => {
            let stack = stack::Stack::from_env()?;
            scenarios::warmup_dynamodb(&stack, calls).await
        }
        Command::NullFunction => function::run_null_function(),
        Command::CgroupExec { procs, command } => cpu_share::exec_in(&procs, &command),
        Command::RuntimeNullFunction => function::run_runtime_null_function(),
        Command::Report(args) => report::write(&args),
        Command::Gateway(args) => gateway::run(args).await,
    }
}
