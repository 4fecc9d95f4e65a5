//! Function processes as Lambda runs them: a fresh process per cold start, an environment that
//! holds only what Lambda and the template give it, stdout and stderr captured (CloudWatch's
//! share of the cost is in those bytes), and peak memory read from `/proc` before it is killed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::Error;
use crate::runtime_api::RuntimeApi;
use crate::stack::Stack;

/// Which function a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Predict,
    Token,
    /// The harness's own `null-function`: polls `/next` and answers `{}`. The floor of what
    /// any function costs to start, to hold in memory and to invoke.
    Null,
    /// The harness's `runtime-null-function`: `lambda_runtime::run` on the functions' runtime
    /// flavour and log subscriber, with a handler that answers at once. What the Rust runtime
    /// costs per invocation before any of our code runs.
    RuntimeNull,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Predict => "predict",
            Self::Token => "token",
            Self::Null => "null",
            Self::RuntimeNull => "runtime-null",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "predict" => Ok(Self::Predict),
            "token" => Ok(Self::Token),
            "null" => Ok(Self::Null),
            "runtime-null" => Ok(Self::RuntimeNull),
            _ => Err(format!(
                "unknown function {s:?} (predict, token, null, runtime-null)"
            )),
        }
    }
}

/// Memory of a live process, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmHWM`: peak resident set size so far.
    pub peak_kib: u64,
    /// `VmRSS`: resident set size now.
    pub rss_kib: u64,
}

/// What the scheduler saw of a process: CPU time and context switches summed over its threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scheduling {
    pub cpu_ns: u64,
    /// Voluntary (blocking, waking another thread) and involuntary context switches.
    pub switches: u64,
    pub threads: u64,
}

impl Scheduling {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Scheduling) -> Scheduling {
        Scheduling {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            switches: self.switches.saturating_sub(earlier.switches),
            threads: self.threads,
        }
    }
}

/// How a function binary is started: on its own, or as the last argument of a launcher
/// (`qemu-aarch64 -L /usr/aarch64-linux-gnu`).
#[derive(Debug, Clone, Copy)]
pub struct Executable<'a> {
    pub launcher: &'a [String],
    pub binary: &'a Path,
}

/// A running function. Dropping it kills the process.
#[derive(Debug)]
pub struct FunctionProcess {
    child: Child,
    pub kind: Kind,
    pub spawned_at: Instant,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl FunctionProcess {
    /// Starts `binary` (for [`Kind::Null`]: this harness) against `api`. `overrides` replace
    /// or add environment variables (e.g. `AWS_ENDPOINT_URL_DYNAMODB` through the counting
    /// proxy, or a policy).
    pub fn spawn(
        kind: Kind,
        binary: &Path,
        stack: &Stack,
        api: &RuntimeApi,
        logs: &Path,
        label: &str,
        overrides: &[(&str, String)],
    ) -> Result<Self, Error> {
        let executable = Executable {
            launcher: &[],
            binary,
        };
        Self::spawn_executable(kind, executable, stack, api, logs, label, overrides)
    }

    /// [`Self::spawn`] for a binary that needs a launcher, such as an arm64 `bootstrap` run by
    /// `qemu-aarch64` on an x86_64 machine. The launcher gets the function's environment, and
    /// nothing else, too.
    pub fn spawn_executable(
        kind: Kind,
        executable: Executable<'_>,
        stack: &Stack,
        api: &RuntimeApi,
        logs: &Path,
        label: &str,
        overrides: &[(&str, String)],
    ) -> Result<Self, Error> {
        let Executable { launcher, binary } = executable;
        std::fs::create_dir_all(logs)?;
        let stdout_path = logs.join(format!("{label}.stdout"));
        let stderr_path = logs.join(format!("{label}.stderr"));
        let mut env = stack.function_env(kind, &api.address());
        for (name, value) in overrides {
            env.retain(|(n, _)| n != name);
            env.push(((*name).to_owned(), value.clone()));
        }
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        match kind {
            Kind::Null => {
                command.arg("null-function");
            }
            Kind::RuntimeNull => {
                command.arg("runtime-null-function");
            }
            Kind::Predict | Kind::Token => {}
        }
        command
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?);
        let spawned_at = Instant::now();
        let child = command.spawn().map_err(|e| match launcher.first() {
            Some(program) => format!("cannot start {} with {program}: {e}", binary.display()),
            None => format!("cannot start {}: {e}", binary.display()),
        })?;
        Ok(Self {
            child,
            kind,
            spawned_at,
            stdout_path,
            stderr_path,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak and current RSS; `None` once the process is gone.
    pub fn memory(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        };
        Some(Memory {
            peak_kib: field("VmHWM:")?,
            rss_kib: field("VmRSS:")?,
        })
    }

    /// CPU time and context switches of the process so far, over all its threads (from
    /// `/proc/<pid>/task/*/schedstat` and `status`); `None` once the process is gone.
    pub fn scheduling(&self) -> Option<Scheduling> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).ok()?;
        let mut total = Scheduling::default();
        for task in tasks.flatten() {
            let dir = task.path();
            let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat")) else {
                continue; // the thread ended meanwhile
            };
            total.cpu_ns += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            total.switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
            total.threads += 1;
        }
        Some(total)
    }

    /// Bytes the function has written to stdout (its log lines) so far.
    pub fn log_bytes(&self) -> u64 {
        std::fs::metadata(&self.stdout_path).map_or(0, |m| m.len())
    }

    /// The captured stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Why the process is no longer running, with the end of its output; `None` while it runs.
    pub fn exit_report(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        let tail = |path: &Path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(8)..].join("\n")
        };
        Some(format!(
            "{} exited ({status})\nstdout:\n{}\nstderr:\n{}",
            self.kind.name(),
            tail(&self.stdout_path),
            tail(&self.stderr_path)
        ))
    }

    /// Adds the process's exit report (if it died) to an error.
    pub fn explain(&mut self, error: Error) -> Error {
        match self.exit_report() {
            Some(report) => format!("{error}\n{report}").into(),
            None => error,
        }
    }

    /// Kills the process and reaps it.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `null-function` subcommand: a Runtime API client with nothing in it (std only, no
/// async runtime, no SDK). Polls `/next`, answers `{"statusCode":200}`, forever.
pub fn run_null_function() -> Result<(), Error> {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")?;
    let stream = TcpStream::connect(&api)?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;

    // Reads a response head and body; returns the request id header and the body.
    let read_response = |reader: &mut BufReader<TcpStream>| -> Result<String, Error> {
        let mut request_id = String::new();
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err("runtime API closed the connection".into());
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                } else if name.eq_ignore_ascii_case("lambda-runtime-aws-request-id") {
                    value.trim().clone_into(&mut request_id);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        Ok(request_id)
    };

    let answer = br#"{"statusCode":200}"#;
    loop {
        write!(
            writer,
            "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {api}\r\n\r\n"
        )?;
        let request_id = read_response(&mut reader)?;
        let mut post = format!(
            "POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\nHost: {api}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        )
        .into_bytes();
        post.extend_from_slice(answer);
        writer.write_all(&post)?;
        read_response(&mut reader)?;
    }
}

/// The `runtime-null-function` subcommand: what the functions' `main` sets up before any of
/// our request code — tokio's current-thread runtime, the JSON log subscriber of
/// `telemetry::init`, `lambda_runtime::run` (with its span per invocation) — around a handler
/// that skims the event without keeping it and answers `{"statusCode":200}`.
pub fn run_runtime_null_function() -> Result<(), Error> {
    #[derive(serde::Serialize)]
    struct Answer {
        #[serde(rename = "statusCode")]
        status_code: u16,
    }

    let vars = secure_ml_core::config::Vars::from_env();
    secure_ml_core::telemetry::init(&vars)?;
    let handler = lambda_runtime::service_fn(
        |_: lambda_runtime::LambdaEvent<serde::de::IgnoredAny>| async {
            Ok::<_, std::convert::Infallible>(Answer { status_code: 200 })
        },
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(lambda_runtime::run(handler))
}
