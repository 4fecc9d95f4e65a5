//! The measured scenarios. Each one drives release binaries through [`RuntimeApi`] and writes
//! one JSON file (see [`crate::results`]); none of them decides pass or fail.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Error;
use crate::conditions::{self, Conditions};
use crate::events;
use crate::function::{Executable, FunctionProcess, Kind, Scheduling};
use crate::instant::InstantDynamo;
use crate::proxy::{CountingProxy, Counts};
use crate::raw;
use crate::results::{
    Calls, CallsRow, ColdStart, FreshProcess, FreshProcessRun, SchedulingSeries, Warm,
    WarmScheduling, this_command,
};
use crate::runtime_api::{Invocation, PostKind, RuntimeApi};
use crate::stack::{self, Stack};
use crate::stats::Summary;

/// How long any single step may take before the scenario gives up (a hung function).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

// Source-IP phases (`10.<phase>.x.y`): no two scenarios share a rate-limit key.
const PHASE_COLD: u8 = 1;
const PHASE_WARM: u8 = 3;
const PHASE_FLOOR: u8 = 4;
const PHASE_TOKEN: u8 = 5;
const PHASE_CALLS: u8 = 6;

/// Whether iteration `i` of a warm loop makes its floor calls before the invocation (odd
/// iterations) or after it (even ones). DynamoDB Local answers a call that closely follows
/// another faster than one that follows a pause, so whichever side of the comparison always
/// came second would be favoured: with the floor always right after the invocation, the
/// predict loop measured a paired ratio p50 of 1.27-1.28; always right before, 1.02-1.08
/// (three runs each, n=2000). Alternating gives both sides both positions equally, and the
/// report shows the ratio for each order.
fn floor_first(i: usize) -> bool {
    i % 2 == 1
}

/// Paired ratios invocation / floor: all of them, and apart by the order of the two.
#[derive(Default)]
struct PairedRatios {
    all: Vec<f64>,
    floor_after: Vec<f64>,
    floor_before: Vec<f64>,
}

impl PairedRatios {
    fn push(&mut self, floor_first: bool, invocation_ms: f64, floor_ms: f64) {
        let ratio = invocation_ms / floor_ms;
        self.all.push(ratio);
        if floor_first {
            self.floor_before.push(ratio);
        } else {
            self.floor_after.push(ratio);
        }
    }
}

fn summary(values: &[f64]) -> Result<Summary, Error> {
    Summary::of(values).ok_or_else(|| Error::from("no successful samples"))
}

/// Mean of each value rounded up to a whole millisecond (Lambda's billing granularity).
fn billed_mean(values_ms: &[f64]) -> f64 {
    values_ms.iter().map(|v| v.ceil()).sum::<f64>() / values_ms.len().max(1) as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The event a function's first (and warm) requests carry: a real, successful request.
/// `predict_body` replaces the Iris row of `POST /predict` (a build with another model).
fn real_request(
    kind: Kind,
    stack: &Stack,
    token: &str,
    ip: &str,
    seq: u64,
    predict_body: Option<&str>,
) -> Vec<u8> {
    match (kind, predict_body) {
        (Kind::Predict, Some(body)) => events::predict_with_body(token, ip, seq, body),
        (Kind::Predict, None) => events::predict(token, ip, seq),
        (Kind::Token, _) => events::token(&stack.client_id, &stack.client_secret, ip, seq),
        (Kind::Null | Kind::RuntimeNull, _) => events::empty(),
    }
}

fn expect_ok(invocation: &Invocation, kind: Kind) -> Result<(), String> {
    if invocation.kind != PostKind::Response {
        return Err(format!(
            "{} posted an invocation error: {}",
            kind.name(),
            String::from_utf8_lossy(&invocation.body)
        ));
    }
    if matches!(kind, Kind::Null | Kind::RuntimeNull) {
        return Ok(());
    }
    match invocation.status() {
        Some(200) => Ok(()),
        status => Err(format!(
            "{} answered {status:?}: {}",
            kind.name(),
            invocation.body_text()
        )),
    }
}

/// Makes `calls` rate-limit writes and client lookups, and prints how fast the last tenth went.
pub async fn warmup_dynamodb(stack: &Stack, calls: usize) -> Result<(), Error> {
    let client = stack::dynamodb().await?;
    let mut last = Vec::new();
    for i in 0..calls {
        let write = raw::fresh_write(
            &client,
            &stack.rate_limit_table,
            &format!("bench#warmup-{i}"),
        )
        .await;
        let read = raw::get_client(&client, &stack.clients_table, &stack.client_id).await;
        if !write.ok() || !read.ok() {
            return Err(
                format!("warm-up calls failed: {} / {}", write.outcome, read.outcome).into(),
            );
        }
        if i >= calls - calls / 10 {
            last.push(write.ms);
        }
    }
    if let Some(s) = Summary::of(&last) {
        eprintln!(
            "DynamoDB Local warmed up: UpdateItem p50 {:.3} ms over the last {} calls",
            s.p50, s.n
        );
    }
    Ok(())
}

/// One binary of a cold-start series.
#[derive(Debug, Clone)]
pub struct ColdBinary {
    /// The series' name: the function's, or a variant's label (`predict-gbm`).
    pub label: String,
    pub path: PathBuf,
    /// For a predict function built with another model: the `POST /predict` body its requests
    /// carry instead of `events/predict.json`'s Iris row.
    pub predict_body: Option<String>,
}

/// Cold starts: `runs` fresh processes of each binary, each invoked twice, then measured and
/// killed. With several binaries (the repository's and variants of it) runs alternate, so that
/// a noisy minute on the machine hits every binary alike.
pub async fn coldstart(
    stack: &Stack,
    kind: Kind,
    binaries: &[ColdBinary],
    runs: usize,
    conditions: &Conditions,
    logs: &Path,
) -> Result<Vec<ColdStart>, Error> {
    let token = stack.mint_token()?;
    let trust_check = conditions.trust_check(stack).await?;
    let overrides = conditions.overrides();
    let launcher = conditions.launcher()?;
    let phase_base = match kind {
        Kind::Predict => 0,
        Kind::Token => 20_000,
        Kind::Null | Kind::RuntimeNull => 40_000,
    };
    #[derive(Default)]
    struct Series {
        init: Vec<f64>,
        first: Vec<f64>,
        second: Vec<f64>,
        total: Vec<f64>,
        rss: Vec<f64>,
        failures: Vec<String>,
    }
    let mut series: Vec<Series> = binaries.iter().map(|_| Series::default()).collect();
    for run in 0..runs {
        for (b, (binary, acc)) in binaries.iter().zip(&mut series).enumerate() {
            let mut api = RuntimeApi::start(kind.name()).await?;
            let label = format!("cold-{}{}-{run:02}", binary.label, conditions.suffix());
            let executable = Executable {
                launcher: &launcher,
                binary: &binary.path,
            };
            let body = binary.predict_body.as_deref();
            let mut function = FunctionProcess::spawn_executable(
                kind, executable, stack, &api, logs, &label, &overrides,
            )?;
            let i = phase_base + 2 * (run * binaries.len() + b) as u32;
            let outcome: Result<(), Error> = async {
                let poll = api.next_poll(STEP_TIMEOUT).await?;
                let init_ms = ms(poll.at.saturating_duration_since(function.spawned_at));
                let ip = events::ip(PHASE_COLD, i);
                let event = real_request(kind, stack, &token, &ip, u64::from(i), body);
                let one = api.deliver(poll, event, STEP_TIMEOUT).await?;
                expect_ok(&one, kind)?;
                let ip = events::ip(PHASE_COLD, i + 1);
                let event = real_request(kind, stack, &token, &ip, 0, body);
                let two = api.invoke(event, STEP_TIMEOUT).await?;
                expect_ok(&two, kind)?;
                // Idle again (blocked on /next): every byte it will ever need has been touched.
                let _idle = api.next_poll(STEP_TIMEOUT).await?;
                let memory = function
                    .memory()
                    .ok_or_else(|| Error::from("process vanished before its memory was read"))?;
                acc.init.push(init_ms);
                acc.first.push(one.duration_ms());
                acc.second.push(two.duration_ms());
                acc.total.push(init_ms + one.duration_ms());
                acc.rss.push(memory.peak_kib as f64);
                Ok(())
            }
            .await;
            if let Err(error) = outcome {
                let error = function.explain(error);
                eprintln!("cold start {label} failed: {error}");
                acc.failures.push(error.to_string());
            }
            function.stop();
        }
        eprint!(".");
    }
    eprintln!();
    binaries
        .iter()
        .zip(series)
        .map(|(binary, s)| {
            Ok(ColdStart {
                function: binary.label.clone(),
                binary: binary.path.display().to_string(),
                binary_bytes: std::fs::metadata(&binary.path).map_or(0, |m| m.len()),
                runs,
                init_ms: summary(&s.init)?,
                first_ms: summary(&s.first)?,
                second_ms: summary(&s.second)?,
                cold_total_ms: summary(&s.total)?,
                peak_rss_kib: summary(&s.rss)?,
                billed_cold_ms_mean: billed_mean(&s.total),
                failures: s.failures,
                conditions: conditions.describe(),
                trust_check: trust_check.clone(),
                command: this_command(),
            })
        })
        .collect()
}

/// The `fresh-process-run` subcommand, in a fresh process: build the client as the functions
/// do, then time the first and the second rate-limit write.
pub async fn fresh_process_run(key_prefix: &str) -> Result<FreshProcessRun, Error> {
    let table = std::env::var("RATE_LIMIT_TABLE")?;
    let started = Instant::now();
    let client = stack::dynamodb().await?;
    let client_build_ms = ms(started.elapsed());
    let first = raw::fresh_write(&client, &table, &format!("{key_prefix}#1")).await;
    let second = raw::fresh_write(&client, &table, &format!("{key_prefix}#2")).await;
    Ok(FreshProcessRun {
        client_build_ms,
        first_ms: first.ms,
        first_outcome: first.outcome,
        second_ms: second.ms,
        second_outcome: second.outcome,
    })
}

/// The DynamoDB floor of a cold start: `runs` fresh processes of [`fresh_process_run`], under
/// the same conditions as the cold starts they are the floor of.
pub async fn fresh_process(
    stack: &Stack,
    runs: usize,
    conditions: &Conditions,
) -> Result<FreshProcess, Error> {
    // The predict function's environment, nothing else (certificates, profile files and
    // region are looked up exactly as in a function).
    let mut env = stack.function_env(Kind::Predict, "127.0.0.1:9");
    for (name, value) in conditions.overrides() {
        env.retain(|(n, _)| n != name);
        env.push((name.to_owned(), value));
    }
    let launcher = conditions.launcher()?;
    let mut results: Vec<FreshProcessRun> = Vec::new();
    for run in 0..runs {
        let key = format!("bench#fresh{}-{run}", conditions.suffix());
        let result = conditions::fresh_process_run(&env, &launcher, &key).await?;
        if result.first_outcome != "ok" || result.second_outcome != "ok" {
            return Err(format!("fresh process could not write: {result:?}").into());
        }
        results.push(result);
        eprint!(".");
    }
    eprintln!();
    let pick = |f: fn(&FreshProcessRun) -> f64| results.iter().map(f).collect::<Vec<f64>>();
    Ok(FreshProcess {
        runs,
        client_build_ms: summary(&pick(|r| r.client_build_ms))?,
        first_ms: summary(&pick(|r| r.first_ms))?,
        second_ms: summary(&pick(|r| r.second_ms))?,
        conditions: conditions.describe(),
        command: this_command(),
    })
}

/// The `latency_ms` of the handler's access-log line (`"message":"request"`) in a log slice.
fn handler_latency(slice: &str) -> Option<f64> {
    slice.lines().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        (value["message"] == "request").then(|| value["latency_ms"].as_f64())?
    })
}

/// Line count and byte count of `text[from..to]`.
fn log_slice(text: &str, from: u64, to: u64) -> (usize, u64) {
    let (from, to) = (from as usize, (to as usize).min(text.len()));
    let lines = text.get(from..to).map_or(0, |s| s.matches('\n').count());
    (lines, (to - from.min(to)) as u64)
}

/// Warm `/predict`: one long-lived process, `invocations` requests from distinct source IPs
/// (each admitted with one write), each followed in the same loop by the harness's own FRESH
/// write, a `GET /health` on the same process and an invocation of the null function.
pub async fn warm_predict(
    stack: &Stack,
    binary: &Path,
    invocations: usize,
    warmup: usize,
    logs: &Path,
) -> Result<Warm, Error> {
    let client = stack::dynamodb().await?;
    let instant = InstantDynamo::start().await?;
    let instant_client = instant.client(&client);
    let token = stack.mint_token()?;
    let mut api = RuntimeApi::start("predict").await?;
    let mut function = FunctionProcess::spawn(
        Kind::Predict,
        binary,
        stack,
        &api,
        logs,
        "warm-predict",
        &[],
    )?;
    let mut nulls = NullFunctions::spawn(stack, logs).await?;
    let mut rt_null_ms = Vec::new();

    let (mut f_ms, mut floor_ms, mut health_ms, mut null_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ratios = PairedRatios::default();
    let mut sdk_ms = Vec::new();
    let mut non_2xx = 0usize;
    let mut windows = Vec::new();
    let mut sched = SchedulingSamples::default();
    let result: Result<(), Error> = async {
        for i in 0..(warmup + invocations) {
            let measured = i >= warmup;
            let n = i as u32;
            let floor_key = format!("bench#{}", events::ip(PHASE_FLOOR, n));
            let floor_write =
                async || raw::fresh_write(&client, &stack.rate_limit_table, &floor_key).await;
            let early = if floor_first(i) {
                Some(floor_write().await)
            } else {
                None
            };
            let before = function.log_bytes();
            let (inv, predict_sched) = invoke_idle_to_idle(
                &mut api,
                &function,
                events::predict(&token, &events::ip(PHASE_WARM, n), n.into()),
            )
            .await?;
            let after = function.log_bytes();
            if expect_ok(&inv, Kind::Predict).is_err() {
                non_2xx += 1;
            }
            let floor = match early {
                Some(floor) => floor,
                None => floor_write().await,
            };
            if !floor.ok() {
                return Err(format!("floor write failed: {}", floor.outcome).into());
            }
            let sdk =
                raw::fresh_write(&instant_client, &stack.rate_limit_table, "bench#instant").await;
            if !sdk.ok() {
                return Err(format!("instant endpoint write failed: {}", sdk.outcome).into());
            }
            let (health, health_sched) = invoke_idle_to_idle(
                &mut api,
                &function,
                events::health(&events::ip(PHASE_WARM, n), 0),
            )
            .await?;
            let ((nul, null_sched), (rt_nul, rt_null_sched)) = nulls.invoke().await?;
            if measured {
                sched.push([predict_sched, health_sched, rt_null_sched, null_sched]);
                rt_null_ms.push(rt_nul.duration_ms());
                f_ms.push(inv.duration_ms());
                floor_ms.push(floor.ms);
                ratios.push(floor_first(i), inv.duration_ms(), floor.ms);
                health_ms.push(health.duration_ms());
                sdk_ms.push(sdk.ms);
                null_ms.push(nul.duration_ms());
                windows.push((before, after));
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        return Err(function.explain(error));
    }
    let _idle = api.next_poll(STEP_TIMEOUT).await?;
    let memory = function.memory().ok_or("predict vanished")?;
    let null_memory = nulls.null_memory().await?;
    let (log_lines, log_bytes, handler_ms) = log_windows(&function.stdout(), &windows);
    let measured = invocations.max(1) as f64;
    Ok(Warm {
        function: "predict".to_owned(),
        handler_ms: Summary::of(&handler_ms),
        invocations,
        warmup,
        function_ms: summary(&f_ms)?,
        floor_ms: summary(&floor_ms)?,
        floor_description: "raw UpdateItem (the limiter's FRESH write) from the harness".to_owned(),
        sdk_floor_ms: Summary::of(&sdk_ms),
        health_ms: Summary::of(&health_ms),
        null_ms: Summary::of(&null_ms),
        runtime_null_ms: Summary::of(&rt_null_ms),
        paired_ratio: summary(&ratios.all)?,
        paired_ratio_floor_after: Summary::of(&ratios.floor_after),
        paired_ratio_floor_before: Summary::of(&ratios.floor_before),
        billed_ms_mean: billed_mean(&f_ms),
        peak_rss_kib: memory.peak_kib,
        rss_kib: memory.rss_kib,
        null_peak_rss_kib: null_memory.map(|m| m.peak_kib),
        scheduling: sched.summary(),
        log_bytes_per_request: log_bytes as f64 / measured,
        log_lines_per_request: log_lines as f64 / measured,
        non_2xx,
        command: this_command(),
    })
}

/// Line count, byte count and handler latencies of the access lines in each log window.
fn log_windows(stdout: &str, windows: &[(u64, u64)]) -> (usize, u64, Vec<f64>) {
    let (mut lines, mut bytes, mut handler_ms) = (0, 0, Vec::new());
    for &(from, to) in windows {
        let (l, b) = log_slice(stdout, from, to);
        lines += l;
        bytes += b;
        if let Some(latency) = stdout
            .get(from as usize..to as usize)
            .and_then(handler_latency)
        {
            handler_ms.push(latency);
        }
    }
    (lines, bytes, handler_ms)
}

/// The floors of an invocation, run alongside the warm predict loop: the null function (std,
/// blocking I/O) and the runtime-null function (`lambda_runtime` with nothing of ours).
struct NullFunctions {
    null_api: RuntimeApi,
    null: FunctionProcess,
    runtime_api: RuntimeApi,
    runtime: FunctionProcess,
}

type Measured = (Invocation, Option<Scheduling>);

impl NullFunctions {
    async fn spawn(stack: &Stack, logs: &Path) -> Result<Self, Error> {
        let exe = std::env::current_exe()?;
        let null_api = RuntimeApi::start("null").await?;
        let null =
            FunctionProcess::spawn(Kind::Null, &exe, stack, &null_api, logs, "warm-null", &[])?;
        let runtime_api = RuntimeApi::start("runtime-null").await?;
        let runtime = FunctionProcess::spawn(
            Kind::RuntimeNull,
            &exe,
            stack,
            &runtime_api,
            logs,
            "warm-runtime-null",
            &[],
        )?;
        Ok(Self {
            null_api,
            null,
            runtime_api,
            runtime,
        })
    }

    /// One invocation of each: the null function's, then the runtime-null function's. The
    /// runtime-null function gets the `GET /health` event, so the event's bytes are the
    /// runtime's share, not the frame's.
    async fn invoke(&mut self) -> Result<(Measured, Measured), Error> {
        let null = invoke_idle_to_idle(&mut self.null_api, &self.null, events::empty()).await?;
        let event = events::health(&events::ip(PHASE_WARM, 0), 0);
        let runtime = invoke_idle_to_idle(&mut self.runtime_api, &self.runtime, event).await?;
        Ok((null, runtime))
    }

    /// The null function's memory, once it is idle.
    async fn null_memory(&mut self) -> Result<Option<crate::function::Memory>, Error> {
        self.null_api.wait_idle(STEP_TIMEOUT).await?;
        Ok(self.null.memory())
    }
}

/// Invokes `function` with `event` from idle to idle (blocked on `/next` before, and again
/// after: everything the invocation made it do is over), and what the scheduler saw of it.
async fn invoke_idle_to_idle(
    api: &mut RuntimeApi,
    function: &FunctionProcess,
    event: Vec<u8>,
) -> Result<(Invocation, Option<Scheduling>), Error> {
    api.wait_idle(STEP_TIMEOUT).await?;
    let before = function.scheduling();
    let invocation = api.invoke(event, STEP_TIMEOUT).await?;
    api.wait_idle(STEP_TIMEOUT).await?;
    let after = function.scheduling();
    Ok((invocation, after.zip(before).map(|(a, b)| a.since(&b))))
}

/// CPU time and context switches per invocation of predict, `/health`, the runtime-null and
/// the null function, in that order.
#[derive(Default)]
struct SchedulingSamples {
    series: [(Vec<f64>, Vec<f64>); 4],
    threads: [u64; 4],
}

impl SchedulingSamples {
    fn push(&mut self, samples: [Option<Scheduling>; 4]) {
        for (i, sample) in samples.into_iter().enumerate() {
            if let Some(s) = sample {
                self.series[i].0.push(s.cpu_ns as f64 / 1e3);
                self.series[i].1.push(s.switches as f64);
                self.threads[i] = s.threads;
            }
        }
    }

    fn summary(&self) -> Option<WarmScheduling> {
        let one = |i: usize| -> Option<SchedulingSeries> {
            Some(SchedulingSeries {
                cpu_us: Summary::of(&self.series[i].0)?,
                switches: Summary::of(&self.series[i].1)?,
                threads: self.threads[i],
            })
        };
        Some(WarmScheduling {
            predict: one(0)?,
            health: one(1)?,
            runtime_null: one(2),
            null: one(3)?,
        })
    }
}

/// Warm `POST /token`: distinct source IPs, floor = the harness's own rate-limit write plus
/// the client lookup (`GetItem`), the two DynamoDB calls of an issued token.
pub async fn warm_token(
    stack: &Stack,
    binary: &Path,
    invocations: usize,
    warmup: usize,
    logs: &Path,
) -> Result<Warm, Error> {
    let client = stack::dynamodb().await?;
    let mut api = RuntimeApi::start("token").await?;
    let mut function =
        FunctionProcess::spawn(Kind::Token, binary, stack, &api, logs, "warm-token", &[])?;
    let (mut f_ms, mut floor_ms) = (Vec::new(), Vec::new());
    let mut ratios = PairedRatios::default();
    let (mut non_2xx, mut log_lines, mut log_bytes) = (0usize, 0usize, 0u64);
    let mut windows = Vec::new();
    let result: Result<(), Error> = async {
        for i in 0..(warmup + invocations) {
            let n = i as u32;
            let floor_key = format!("bench#t{}", events::ip(PHASE_FLOOR, n));
            let floor_calls = async || {
                let write = raw::fresh_write(&client, &stack.rate_limit_table, &floor_key).await;
                let read = raw::get_client(&client, &stack.clients_table, &stack.client_id).await;
                (write, read)
            };
            let early = if floor_first(i) {
                Some(floor_calls().await)
            } else {
                None
            };
            let before = function.log_bytes();
            let event = events::token(
                &stack.client_id,
                &stack.client_secret,
                &events::ip(PHASE_TOKEN, n),
                n.into(),
            );
            let inv = api.invoke(event, STEP_TIMEOUT).await?;
            let after = function.log_bytes();
            if expect_ok(&inv, Kind::Token).is_err() {
                non_2xx += 1;
            }
            let (write, read) = match early {
                Some(calls) => calls,
                None => floor_calls().await,
            };
            if !write.ok() || !read.ok() {
                return Err(
                    format!("floor calls failed: {} / {}", write.outcome, read.outcome).into(),
                );
            }
            if i >= warmup {
                let floor = write.ms + read.ms;
                f_ms.push(inv.duration_ms());
                floor_ms.push(floor);
                ratios.push(floor_first(i), inv.duration_ms(), floor);
                windows.push((before, after));
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        return Err(function.explain(error));
    }
    let _idle = api.next_poll(STEP_TIMEOUT).await?;
    let memory = function.memory().ok_or("token vanished")?;
    let stdout = function.stdout();
    for (from, to) in windows {
        let (lines, bytes) = log_slice(&stdout, from, to);
        log_lines += lines;
        log_bytes += bytes;
    }
    let measured = invocations.max(1) as f64;
    Ok(Warm {
        function: "token".to_owned(),
        invocations,
        warmup,
        function_ms: summary(&f_ms)?,
        floor_ms: summary(&floor_ms)?,
        floor_description: "raw UpdateItem + GetItem (client lookup) from the harness".to_owned(),
        sdk_floor_ms: None,
        handler_ms: None,
        health_ms: None,
        null_ms: None,
        runtime_null_ms: None,
        paired_ratio: summary(&ratios.all)?,
        paired_ratio_floor_after: Summary::of(&ratios.floor_after),
        paired_ratio_floor_before: Summary::of(&ratios.floor_before),
        billed_ms_mean: billed_mean(&f_ms),
        peak_rss_kib: memory.peak_kib,
        rss_kib: memory.rss_kib,
        null_peak_rss_kib: None,
        scheduling: None,
        log_bytes_per_request: log_bytes as f64 / measured,
        log_lines_per_request: log_lines as f64 / measured,
        non_2xx,
        command: this_command(),
    })
}

/// The instances of the calls scenario: two predict instances sharing the table, as two
/// Lambda instances do, and the token function.
#[derive(Debug, Clone, Copy)]
enum Instance {
    A,
    B,
    Token,
}

impl Instance {
    /// Spawn order, which is also each instance's index.
    const ALL: [Instance; 3] = [Self::A, Self::B, Self::Token];

    fn index(self) -> usize {
        self as usize
    }

    /// The name in the report.
    fn name(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
            Self::Token => "token",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::A | Self::B => Kind::Predict,
            Self::Token => Kind::Token,
        }
    }

    /// The label of its logs.
    fn label(self) -> &'static str {
        match self {
            Self::A => "calls-predict-a",
            Self::B => "calls-predict-b",
            Self::Token => "calls-token",
        }
    }
}

/// One request of the calls scenario and the DynamoDB calls it should make.
struct Step {
    instance: Instance,
    case: &'static str,
    event: Vec<u8>,
    expected_calls: u64,
    expected: &'static str,
    /// A row of the report; the other steps only set the stage for the next ones.
    report: bool,
}

impl Step {
    fn new(
        instance: Instance,
        case: &'static str,
        event: Vec<u8>,
        expected_calls: u64,
        expected: &'static str,
    ) -> Self {
        Self {
            instance,
            case,
            event,
            expected_calls,
            expected,
            report: true,
        }
    }

    /// One request on instance A that fills part of another key's burst.
    fn fill(event: Vec<u8>) -> Self {
        Self {
            report: false,
            ..Self::new(Instance::A, "(fill another key's burst)", event, 1, "1")
        }
    }
}

/// The requests, in order: each relies on what the previous ones left behind (a key an
/// instance remembers, a full burst). Source IPs are rate-limit keys: `one` is admitted
/// three times, `two` has its burst filled and is then refused, `three` sends an oversized
/// batch, `four` the rest (an invalid token, `/health`, a token request).
fn calls_steps(stack: &Stack, token: &str) -> Vec<Step> {
    use Instance::{A, B};
    let ip = |i| events::ip(PHASE_CALLS, i);
    let (one, two, three, four) = (ip(1), ip(2), ip(3), ip(4));
    vec![
        Step::new(
            A,
            "admitted: key new to every instance",
            events::predict(token, &one, 1),
            1,
            "1 UpdateItem (FRESH)",
        ),
        Step::new(
            A,
            "admitted: busy key this instance remembers",
            events::predict(token, &one, 2),
            1,
            "1 UpdateItem (EXTEND)",
        ),
        Step::new(
            B,
            "admitted: busy key new to this instance",
            events::predict(token, &one, 3),
            2,
            "2 UpdateItem (FRESH fails, EXTEND)",
        ),
        Step::fill(events::predict(token, &two, 4)),
        Step::fill(events::predict(token, &two, 5)),
        Step::fill(events::predict(token, &two, 6)),
        Step::new(
            B,
            "refused: by DynamoDB (key new to this instance)",
            events::predict(token, &two, 7),
            1,
            "1 UpdateItem, condition fails (ALL_OLD → refuse)",
        ),
        Step::new(
            B,
            "refused again: same instance, before Retry-After",
            events::predict(token, &two, 8),
            0,
            "0 (from memory)",
        ),
        Step::new(
            A,
            "refused: instance that filled the burst itself",
            events::predict(token, &two, 9),
            0,
            "0 (from memory)",
        ),
        Step::new(
            A,
            "refused: batch of 4 rows > burst 3",
            events::batch(token, &three, 10, 4),
            0,
            "0 (can never fit)",
        ),
        Step::new(
            A,
            "rejected: invalid token (401)",
            events::predict_bad_token(&four, 11),
            0,
            "0 (auth before limit)",
        ),
        Step::new(A, "GET /health", events::health(&four, 12), 0, "0"),
        Step::new(
            Instance::Token,
            "POST /token: issued",
            events::token(&stack.client_id, &stack.client_secret, &four, 13),
            2,
            "1 UpdateItem + 1 GetItem",
        ),
    ]
}

/// A function process under its own Runtime API (the process first: it dies before its API).
struct Running {
    process: FunctionProcess,
    api: RuntimeApi,
}

/// Starts every [`Instance`] with its DynamoDB calls going through `proxy` and a strict
/// policy for predict (quota 1 per minute, burst 3), which keeps every bucket full for the
/// few milliseconds the steps take.
async fn spawn_instances(
    stack: &Stack,
    predict: &Path,
    token_binary: &Path,
    proxy: &CountingProxy,
    logs: &Path,
) -> Result<Vec<Running>, Error> {
    let overrides = [
        ("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint()),
        ("PREDICT_RATE_PER_MINUTE", "1".to_owned()),
        ("PREDICT_BURST", "3".to_owned()),
    ];
    let mut running = Vec::new();
    for instance in Instance::ALL {
        let kind = instance.kind();
        let binary = if kind == Kind::Predict {
            predict
        } else {
            token_binary
        };
        let api = RuntimeApi::start(kind.name()).await?;
        let process = FunctionProcess::spawn(
            kind,
            binary,
            stack,
            &api,
            logs,
            instance.label(),
            &overrides,
        )?;
        running.push(Running { process, api });
    }
    // Every instance's init (its `DescribeTable` calls) is over before the first step is
    // counted: otherwise those calls land in whichever step runs meanwhile.
    for Running { process, api } in &mut running {
        if let Err(error) = api.wait_idle(STEP_TIMEOUT).await {
            return Err(process.explain(error));
        }
    }
    Ok(running)
}

/// Sends `step` to its instance and counts the DynamoDB calls the proxy saw meanwhile; the
/// report's row when the step is one.
async fn run_step(
    running: &mut [Running],
    proxy: &CountingProxy,
    step: Step,
) -> Result<Option<CallsRow>, Error> {
    let before: Counts = proxy.counts();
    let Running { process, api } = &mut running[step.instance.index()];
    let invocation = match api.invoke(step.event, STEP_TIMEOUT).await {
        Ok(inv) => inv,
        Err(error) => return Err(process.explain(error)),
    };
    let counts = proxy.counts().since(&before);
    Ok(step.report.then(|| CallsRow {
        case: step.case.to_owned(),
        instance: step.instance.name().to_owned(),
        status: invocation.status(),
        counts,
        expected_calls: step.expected_calls,
        expected: step.expected.to_owned(),
    }))
}

/// DynamoDB calls per request, counted by a proxy in front of DynamoDB Local, over the
/// requests of [`calls_steps`] sent to the instances of [`Instance`].
pub async fn calls(
    stack: &Stack,
    predict: &Path,
    token_binary: &Path,
    logs: &Path,
) -> Result<Calls, Error> {
    let proxy = CountingProxy::start(&stack.endpoint).await?;
    let token = stack.mint_token()?;
    let mut running = spawn_instances(stack, predict, token_binary, &proxy, logs).await?;
    let mut rows = Vec::new();
    for step in calls_steps(stack, &token) {
        rows.extend(run_step(&mut running, &proxy, step).await?);
    }
    for Running { process, .. } in running {
        process.stop();
    }
    Ok(Calls {
        policy: "PREDICT_RATE_PER_MINUTE=1, PREDICT_BURST=3 (token: template defaults)".to_owned(),
        rows,
        command: this_command(),
    })
}
