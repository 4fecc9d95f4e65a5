//! What each scenario writes to the results directory (one JSON file each) and the report reads.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::Error;
use crate::proxy::Counts;
use crate::stats::Summary;

/// Twenty (or `--runs`) fresh processes of one function.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdStart {
    pub function: String,
    pub binary: String,
    pub binary_bytes: u64,
    pub runs: usize,
    /// Spawn to the first `/next` poll, ms.
    pub init_ms: Summary,
    /// First invocation (connection to DynamoDB not yet open), ms.
    pub first_ms: Summary,
    /// Second invocation of the same process, ms.
    pub second_ms: Summary,
    /// Init + first invocation: what the first caller waits for on top of the network, ms.
    pub cold_total_ms: Summary,
    /// `VmHWM` after the second invocation, KiB.
    pub peak_rss_kib: Summary,
    /// Mean of `ceil(init + first)`: Lambda bills a custom runtime's init with its first
    /// invocation, rounded up to the millisecond.
    pub billed_cold_ms_mean: f64,
    pub failures: Vec<String>,
    /// Network and CPU the runs had (`Conditions::describe`).
    #[serde(default)]
    pub conditions: String,
    /// Over TLS: the evidence that the function trusted the chain through `SSL_CERT_FILE`.
    #[serde(default)]
    pub trust_check: Option<String>,
    pub command: String,
}

/// The DynamoDB floor of a cold start: `runs` fresh processes, each building the SDK client as
/// the functions do and then making two rate-limit writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FreshProcess {
    pub runs: usize,
    /// Building the SDK configuration and the DynamoDB client (`Aws::load`), ms.
    pub client_build_ms: Summary,
    /// The first rate-limit write of the process (the connection not yet open), ms.
    pub first_ms: Summary,
    /// The second one, on the open connection, ms.
    pub second_ms: Summary,
    #[serde(default)]
    pub conditions: String,
    pub command: String,
}

/// One fresh process's answer (printed as one JSON line on stdout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FreshProcessRun {
    pub client_build_ms: f64,
    pub first_ms: f64,
    pub first_outcome: String,
    pub second_ms: f64,
    pub second_outcome: String,
}

/// A long-lived function under sequential load, next to its floors measured in the same loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Warm {
    pub function: String,
    pub invocations: usize,
    pub warmup: usize,
    /// The function's invocation duration, ms.
    pub function_ms: Summary,
    /// The DynamoDB work of the same request made directly by the harness, ms.
    pub floor_ms: Summary,
    pub floor_description: String,
    /// The same SDK call against an endpoint that answers at once: the SDK and loopback HTTP
    /// alone, without DynamoDB Local's own work, ms.
    pub sdk_floor_ms: Option<Summary>,
    /// The handler's own `latency_ms` (its access-log line): the invocation minus the runtime.
    pub handler_ms: Option<Summary>,
    /// `GET /health` on the same process (runtime + routing, no token, no DynamoDB), ms.
    pub health_ms: Option<Summary>,
    /// The null function's invocation (the Runtime API round trip alone), ms.
    pub null_ms: Option<Summary>,
    /// The runtime-null function's invocation (`lambda_runtime` and nothing of ours), ms.
    #[serde(default)]
    pub runtime_null_ms: Option<Summary>,
    /// Per-iteration ratio function / floor (paired samples), summarised.
    pub paired_ratio: Summary,
    /// The same, of the iterations that made the floor calls right after the invocation.
    #[serde(default)]
    pub paired_ratio_floor_after: Option<Summary>,
    /// The same, of the iterations that made the floor calls right before the invocation.
    #[serde(default)]
    pub paired_ratio_floor_before: Option<Summary>,
    /// Mean of `ceil(duration)`: what Lambda bills per warm invocation, ms.
    pub billed_ms_mean: f64,
    pub peak_rss_kib: u64,
    pub rss_kib: u64,
    pub null_peak_rss_kib: Option<u64>,
    /// What the scheduler saw per invocation (predict only).
    #[serde(default)]
    pub scheduling: Option<WarmScheduling>,
    pub log_bytes_per_request: f64,
    pub log_lines_per_request: f64,
    pub non_2xx: usize,
    pub command: String,
}

/// CPU time and context switches of a process per invocation, idle to idle, over its threads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulingSeries {
    pub cpu_us: Summary,
    pub switches: Summary,
    /// Threads of the process.
    pub threads: u64,
}

/// The warm predict run's scheduling: `POST /predict`, `GET /health` and the null function.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmScheduling {
    pub predict: SchedulingSeries,
    pub health: SchedulingSeries,
    #[serde(default)]
    pub runtime_null: Option<SchedulingSeries>,
    pub null: SchedulingSeries,
}

/// One request of the DynamoDB-calls scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallsRow {
    pub case: String,
    pub instance: String,
    pub status: Option<u16>,
    pub counts: Counts,
    pub expected_calls: u64,
    pub expected: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Calls {
    pub policy: String,
    pub rows: Vec<CallsRow>,
    pub command: String,
}

/// `scripts/model_bench.sh`'s document (`model-bench.json`): large tree ensembles timed by this
/// project's runtime (criterion medians) and by onnxruntime from Python (medians of timed
/// blocks), on the same models and rows. The speedups it also carries are left unread: the
/// report derives them from these figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelBench {
    pub onnxruntime_version: String,
    /// A `run()` of an Identity graph from Python: the call's own cost, ns.
    pub onnxruntime_call_overhead_ns: OrtPools<f64>,
    /// By short name (`gbm`, `rf`).
    pub models: BTreeMap<String, ModelBenchModel>,
}

/// One value per onnxruntime thread setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrtPools<T> {
    /// `intra_op_num_threads=1`.
    pub threads_1: T,
    /// onnxruntime's default pool (one thread per core).
    pub threads_default: T,
}

/// One model of [`ModelBench`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelBenchModel {
    /// What it is, in words (library, trees, depth, features).
    pub model: String,
    /// Our artifact (`model.bin`), bytes.
    pub artifact_bytes: u64,
    /// The ONNX file onnxruntime loads, bytes.
    pub onnx_bytes: u64,
    pub ours: OursTimes,
    pub onnxruntime: OrtPools<OrtTimes>,
}

/// This project's runtime on one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OursTimes {
    /// `Ensemble::from_bytes`, validation included: the init-time decode, µs.
    pub decode_us: f64,
    pub row_ns: f64,
    pub batch_100_per_row_ns: f64,
}

/// onnxruntime on one model with one thread setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrtTimes {
    pub session_create_ms: f64,
    pub row_ns: f64,
    pub batch_100_per_row_ns: f64,
}

pub fn write<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Reads `<dir>/<name>.json`; `None` when the scenario did not run.
pub fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text)
        .map_err(|e| eprintln!("warning: {name}.json is unreadable: {e}"))
        .ok()
}

/// The command line that produced a result, for the report.
pub fn this_command() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map_or(p.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
