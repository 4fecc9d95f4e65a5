//! Where a cold start runs: how the function reaches DynamoDB (plain HTTP on loopback, or TLS
//! as on AWS) and how much CPU it gets (a whole core, or a Lambda memory size's share).

use std::path::Path;

use crate::Error;
use crate::cpu_share::CpuShare;
use crate::function::Kind;
use crate::results::FreshProcessRun;
use crate::stack::Stack;
use crate::tls::TlsFront;

/// The conditions of one cold-start series. Dropping it stops the TLS front and removes the
/// cgroup.
#[derive(Debug, Default)]
pub struct Conditions {
    pub tls: Option<TlsFront>,
    pub cpu: Option<CpuShare>,
}

impl Conditions {
    /// Starts what `tls` and `cpu_mb` ask for; `dir` receives the trust file.
    pub async fn set_up(
        stack: &Stack,
        tls: bool,
        cpu_mb: Option<u32>,
        dir: &Path,
    ) -> Result<Self, Error> {
        let tls = if tls {
            Some(TlsFront::start(&stack.endpoint, dir).await?)
        } else {
            None
        };
        let cpu = cpu_mb.map(CpuShare::create).transpose()?;
        Ok(Self { tls, cpu })
    }

    /// What the result file names carry: `""`, `-tls`, `-cpu128`, `-tls-cpu128`.
    pub fn suffix(&self) -> String {
        let mut suffix = String::new();
        if self.tls.is_some() {
            suffix.push_str("-tls");
        }
        if let Some(cpu) = &self.cpu {
            suffix.push_str(&format!("-cpu{}", cpu.memory_mb));
        }
        suffix
    }

    /// The conditions in words, for the report.
    pub fn describe(&self) -> String {
        let network = match &self.tls {
            Some(_) => "DynamoDB Local behind TLS at `https://localhost:<port>` (RSA-2048 chain made for the run; trust: the Amazon Trust Services roots the functions carry + the throwaway root, through `SSL_CERT_FILE`)".to_owned(),
            None => "DynamoDB Local over plain HTTP on loopback".to_owned(),
        };
        let cpu = self
            .cpu
            .as_ref()
            .map_or_else(|| "a whole core".to_owned(), CpuShare::describe);
        format!("{network}; CPU: {cpu}")
    }

    /// Environment overrides for a function process.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        self.tls
            .as_ref()
            .map(TlsFront::overrides)
            .unwrap_or_default()
    }

    /// The launcher of a function process (empty: none).
    pub fn launcher(&self) -> Result<Vec<String>, Error> {
        self.cpu
            .as_ref()
            .map_or_else(|| Ok(Vec::new()), CpuShare::launcher)
    }

    /// Checks that the function trusts the TLS front through `SSL_CERT_FILE` and nothing else:
    /// a fresh process without it must fail its first call, the same process with it succeed.
    pub async fn trust_check(&self, stack: &Stack) -> Result<Option<String>, Error> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let mut env = stack.function_env(Kind::Predict, "127.0.0.1:9");
        set(&mut env, "AWS_ENDPOINT_URL_DYNAMODB", tls.endpoint());
        // Keys of their own per check: the write is the limiter's FRESH write, which a key
        // another check wrote a moment ago would refuse.
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let without = fresh_process_run(&env, &[], &format!("bench#trust-without-{nonce}")).await?;
        set(
            &mut env,
            "SSL_CERT_FILE",
            tls.trust_file().display().to_string(),
        );
        let with = fresh_process_run(&env, &[], &format!("bench#trust-with-{nonce}")).await?;
        if without.first_outcome == "ok" || with.first_outcome != "ok" {
            return Err(format!(
                "the function does not trust the TLS front through SSL_CERT_FILE alone: without it {}, with it {}",
                without.first_outcome, with.first_outcome
            )
            .into());
        }
        Ok(Some(format!(
            "a fresh process without SSL_CERT_FILE: {}; with it: {}",
            without.first_outcome, with.first_outcome
        )))
    }
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: String) {
    env.retain(|(n, _)| n != name);
    env.push((name.to_owned(), value));
}

/// One `fresh-process-run` of this harness with exactly `env`, through `launcher`.
pub async fn fresh_process_run(
    env: &[(String, String)],
    launcher: &[String],
    key_prefix: &str,
) -> Result<FreshProcessRun, Error> {
    let exe = std::env::current_exe()?;
    let (env, launcher, key_prefix) = (env.to_vec(), launcher.to_vec(), key_prefix.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut command = std::process::Command::new(program);
                command.args(args).arg(&exe);
                command
            }
            None => std::process::Command::new(&exe),
        };
        command
            .env_clear()
            .envs(env)
            .args(["fresh-process-run", "--key-prefix", &key_prefix])
            .output()
    })
    .await??;
    if !output.status.success() {
        return Err(format!(
            "fresh process failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
