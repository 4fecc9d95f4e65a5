//! What an anonymous caller costs: requests with no valid token and no client secret, each
//! from a new source IP (so no per-source penalty or remembered refusal ever spares the work),
//! sent to warm function processes. For each kind: invocation durations, log bytes and lines,
//! the status answered, and the DynamoDB calls per request, counted through the proxy. The
//! report prices the worst of them at the template's throttle.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::events;
use crate::function::{FunctionProcess, Kind};
use crate::proxy::CountingProxy;
use crate::results::this_command;
use crate::runtime_api::{PostKind, RuntimeApi};
use crate::stack::Stack;
use crate::stats::Summary;

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Source IPs `10.7.x.y`: a phase of their own (see `scenarios`).
const PHASE_REJECTIONS: u8 = 7;
/// Requests of each kind before the measured ones (connections, caches, JIT of DynamoDB Local).
const WARMUP: usize = 20;

/// One kind of anonymous request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anonymous {
    ForgedToken,
    UnknownPath,
    TokenBadBody,
    TokenWrongCredentials,
}

impl Anonymous {
    const ALL: [Self; 4] = [
        Self::ForgedToken,
        Self::UnknownPath,
        Self::TokenBadBody,
        Self::TokenWrongCredentials,
    ];

    fn function(self) -> Kind {
        match self {
            Self::ForgedToken | Self::UnknownPath => Kind::Predict,
            Self::TokenBadBody | Self::TokenWrongCredentials => Kind::Token,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::ForgedToken => {
                "`POST /predict`, bearer token of our shape and a known `kid`, forged signature (the body is never read without a valid token)"
            }
            Self::UnknownPath => "`GET /x…`, a path no route has (`$default` → predict)",
            Self::TokenBadBody => {
                "`POST /token`, a form body that is no client-credentials request, no credentials"
            }
            Self::TokenWrongCredentials => {
                "`POST /token`, HTTP Basic with a client id of our shape that does not exist"
            }
        }
    }

    fn event(self, token: &str, n: u32) -> Vec<u8> {
        let ip = events::ip(PHASE_REJECTIONS, n);
        let seq = u64::from(n);
        match self {
            Self::ForgedToken => events::predict_forged_token(token, &ip, seq),
            Self::UnknownPath => events::unknown_path(&format!("/x{n}"), &ip, seq),
            Self::TokenBadBody => events::token_bad_body(&ip, seq),
            Self::TokenWrongCredentials => events::token(
                &format!("cl_{:032x}", 0xdead_0000_u128 + u128::from(n)),
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                &ip,
                seq,
            ),
        }
    }
}

/// The measurements of one kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rejection {
    pub kind: String,
    pub function: String,
    pub statuses: Vec<u16>,
    pub requests: usize,
    pub duration_ms: Summary,
    /// Mean of `ceil(duration)`: what Lambda bills.
    pub billed_ms_mean: f64,
    pub log_bytes_per_request: f64,
    pub log_lines_per_request: f64,
    /// DynamoDB calls per request, as the proxy counted them.
    pub update_items_per_request: f64,
    pub get_items_per_request: f64,
    pub other_calls_per_request: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rejections {
    pub kinds: Vec<Rejection>,
    pub command: String,
}

/// `requests` of each kind, each from a new source IP: timed on a process that talks to
/// DynamoDB Local directly, then [`COUNTED`] more on a process whose calls go through the
/// counting proxy (the proxy's hop would distort the durations).
pub async fn run(
    stack: &Stack,
    predict: &Path,
    token_binary: &Path,
    requests: usize,
    logs: &Path,
) -> Result<Rejections, Error> {
    let proxy = CountingProxy::start(&stack.endpoint).await?;
    let token = stack.mint_token()?;
    let mut kinds = Vec::new();
    let mut n = 0u32;
    for kind in Anonymous::ALL {
        let binary = if kind.function() == Kind::Predict {
            predict
        } else {
            token_binary
        };
        let timed = Pass::run(stack, kind, binary, &[], requests, &token, &mut n, logs).await?;
        let overrides = [("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint())];
        let before = proxy.counts();
        Pass::run(
            stack, kind, binary, &overrides, COUNTED, &token, &mut n, logs,
        )
        .await?;
        let calls = proxy.counts().since(&before);
        let per = requests.max(1) as f64;
        // The counted pass's warm-up requests made calls too.
        let counted = (WARMUP + COUNTED) as f64;
        kinds.push(Rejection {
            kind: kind.describe().to_owned(),
            function: kind.function().name().to_owned(),
            statuses: timed.statuses,
            requests,
            duration_ms: Summary::of(&timed.durations).ok_or("no samples")?,
            billed_ms_mean: timed.durations.iter().map(|d| d.ceil()).sum::<f64>() / per,
            log_bytes_per_request: timed.log_bytes as f64 / per,
            log_lines_per_request: timed.log_lines as f64 / per,
            update_items_per_request: calls.update_item as f64 / counted,
            get_items_per_request: calls.get_item as f64 / counted,
            other_calls_per_request: calls.other as f64 / counted,
        });
        eprint!(".");
    }
    eprintln!();
    Ok(Rejections {
        kinds,
        command: this_command(),
    })
}

/// Requests of each kind sent through the counting proxy.
const COUNTED: usize = 20;

/// One warm process answering `requests` requests of one kind (after [`WARMUP`] more).
struct Pass {
    durations: Vec<f64>,
    statuses: Vec<u16>,
    log_bytes: u64,
    log_lines: usize,
}

impl Pass {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        stack: &Stack,
        kind: Anonymous,
        binary: &Path,
        overrides: &[(&str, String)],
        requests: usize,
        token: &str,
        n: &mut u32,
        logs: &Path,
    ) -> Result<Self, Error> {
        let function = kind.function();
        let mut api = RuntimeApi::start(function.name()).await?;
        let label = format!("rejections-{kind:?}-{}", overrides.len()).to_lowercase();
        let mut process =
            FunctionProcess::spawn(function, binary, stack, &api, logs, &label, overrides)?;
        let mut pass = Self {
            durations: Vec::new(),
            statuses: Vec::new(),
            log_bytes: 0,
            log_lines: 0,
        };
        for i in 0..(WARMUP + requests) {
            *n += 1;
            let log_before = process.log_bytes();
            let invocation = match api.invoke(kind.event(token, *n), STEP_TIMEOUT).await {
                Ok(invocation) => invocation,
                Err(error) => return Err(process.explain(error)),
            };
            let status = invocation.status().unwrap_or(0);
            if invocation.kind != PostKind::Response || !(400..500).contains(&status) {
                return Err(format!("{kind:?} answered {status}, not a 4xx").into());
            }
            if i < WARMUP {
                continue;
            }
            pass.durations.push(invocation.duration_ms());
            if !pass.statuses.contains(&status) {
                pass.statuses.push(status);
            }
            let text = process.stdout();
            let (from, to) = (log_before as usize, process.log_bytes() as usize);
            let slice = text.get(from..to.min(text.len())).unwrap_or_default();
            pass.log_bytes += slice.len() as u64;
            pass.log_lines += slice.matches('\n').count();
        }
        process.stop();
        Ok(pass)
    }
}
