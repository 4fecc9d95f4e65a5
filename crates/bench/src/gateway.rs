//! `smla-bench gateway`: API Gateway's HTTP API in front of function processes that run under
//! the harness's [`RuntimeApi`], so that an HTTP client drives binaries exactly as built.
//! `make deploy-checks` uses it to run the arm64 `bootstrap` files of `sam build` under
//! qemu-user and sends `scripts/smoke.sh` through them, at one base URL as on AWS.
//!
//! ```text
//!   curl ─ HTTP ─▶ gateway ─ route key (template.yaml) ─▶ instance "token"   ─ Runtime API ─▶ process
//!                          ◀──── payload 2.0 response ───  instance "predict" ─ Runtime API ─▶ process
//! ```
//!
//! What it does as the HTTP API does: routes by route key (`ANY /predict`, then `$default`,
//! else `{"message":"Not Found"}`); builds the payload 2.0 event (lower-case headers, duplicates
//! joined by commas, `cookies`, decoded `queryStringParameters`, `sourceIp` = the TCP peer,
//! `X-Forwarded-*` added); base64-encodes bodies it does not treat as text (text means `text/*`,
//! JSON and XML media types: form bodies go encoded, so the functions' decoding path runs);
//! turns the function's response back into HTTP (`cookies` as `Set-Cookie`, base64 bodies
//! decoded, a JSON result without `statusCode` as a 200 `application/json` body); answers a
//! failed invocation with `500 {"message":"Internal Server Error"}`.
//!
//! What it does not do: throttling, authorizers, CORS, TLS, payload limits beyond a sanity cap.
//! Each function has one instance, like a reserved concurrency of 1: concurrent requests to a
//! function queue. A function that exits or stops answering stops the gateway (exit status 1,
//! with the end of the function's output): it is a test fixture, so a broken function must be
//! loud rather than replaced.
//!
//! The stack (DynamoDB Local, tables, key files, issuer, audience) is read from the environment
//! as by every `smla-bench` command, and each function gets [`Stack::function_env`]: Lambda's
//! variables, the template's, and `--env` overrides of those. Timings of requests are
//! deliberately not printed: under emulation they measure the emulator.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use secure_ml_core::config;

use crate::Error;
use crate::function::{Executable, FunctionProcess, Kind};
use crate::http1::{Framing, Head, read_body, read_head};
use crate::runtime_api::{PostKind, RuntimeApi};
use crate::stack::Stack;

/// Largest request body accepted (API Gateway's own limit is 10 MB; Lambda's is 6 MB).
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port to listen on (127.0.0.1), once every function has finished its init.
    #[arg(long)]
    port: u16,
    /// A function: `NAME=BINARY`, NAME `predict` or `token` (which environment it gets).
    #[arg(long = "function", value_parser = parse_function, required = true)]
    functions: Vec<(Kind, PathBuf)>,
    /// A route: `ROUTE_KEY=NAME`, with API Gateway's route keys (`ANY /predict`,
    /// `POST /token`, `$default`).
    #[arg(long = "route", value_parser = parse_route, required = true)]
    routes: Vec<(RouteKey, Kind)>,
    /// `NAME=VALUE`: replaces NAME's value in the environment of every function that has it
    /// (the template's value; e.g. a lower `TOKEN_BURST`). A NAME no function has is an error.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Directory for each function's stdout and stderr.
    #[arg(long)]
    logs: PathBuf,
    /// Seconds a function may take to initialise (start to its first `/next`).
    #[arg(long, default_value_t = 120)]
    init_timeout: u64,
    /// Seconds a function may take to answer one invocation.
    #[arg(long, default_value_t = 30)]
    invoke_timeout: u64,
    /// The command that starts each binary, after `--`: e.g. `-- qemu-aarch64 -L
    /// /usr/aarch64-linux-gnu`. None: the binaries run directly.
    #[arg(last = true)]
    launcher: Vec<String>,
}

fn parse_function(s: &str) -> Result<(Kind, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=BINARY, got {s:?}"))?;
    match name.parse::<Kind>()? {
        Kind::Null | Kind::RuntimeNull => Err("the gateway serves predict and token".to_owned()),
        kind if !path.is_empty() => Ok((kind, PathBuf::from(path))),
        _ => Err(format!("no binary in {s:?}")),
    }
}

fn parse_route(s: &str) -> Result<(RouteKey, Kind), String> {
    let (key, name) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected ROUTE_KEY=NAME, got {s:?}"))?;
    Ok((key.parse()?, name.parse()?))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

/// An HTTP API route key: `METHOD /path` (METHOD may be `ANY`) or `$default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    Route { method: String, path: String },
    Default,
}

impl std::str::FromStr for RouteKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "$default" {
            return Ok(Self::Default);
        }
        match s.split_once(' ') {
            Some((method, path)) if !method.is_empty() && path.starts_with('/') => {
                Ok(Self::Route {
                    method: method.to_ascii_uppercase(),
                    path: path.to_owned(),
                })
            }
            _ => Err(format!(
                "route key {s:?} is neither `METHOD /path` nor `$default`"
            )),
        }
    }
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Route { method, path } => write!(f, "{method} {path}"),
            Self::Default => f.write_str("$default"),
        }
    }
}

/// The routing table. Like the HTTP API's: a route with the request's method wins over an
/// `ANY` route of the same path, and `$default` takes what no route matches. Paths match
/// exactly (the template declares no path parameters or greedy paths).
#[derive(Debug, Clone)]
pub struct Routes(Vec<(RouteKey, Kind)>);

impl Routes {
    pub fn new(routes: Vec<(RouteKey, Kind)>) -> Self {
        Self(routes)
    }

    pub fn find(&self, method: &str, path: &str) -> Option<(&RouteKey, Kind)> {
        let matching = |want_method: &str| {
            self.0.iter().find(|(key, _)| {
                matches!(key, RouteKey::Route { method: m, path: p } if m == want_method && p == path)
            })
        };
        matching(&method.to_ascii_uppercase())
            .or_else(|| matching("ANY"))
            .or_else(|| self.0.iter().find(|(key, _)| *key == RouteKey::Default))
            .map(|(key, kind)| (key, *kind))
    }

    fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.0.iter().map(|(_, kind)| *kind)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests → events

/// An HTTP request as the gateway received it.
#[derive(Debug)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The request target: path and query.
    pub target: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub peer: SocketAddr,
    /// The gateway's own port (`X-Forwarded-Port`).
    pub local_port: u16,
}

/// What an event carries beyond the request.
#[derive(Debug)]
pub struct EventContext<'a> {
    pub route_key: &'a RouteKey,
    pub request_id: &'a str,
    pub epoch_ms: u64,
}

/// The API Gateway HTTP API (payload 2.0) event for `request`.
pub fn http_api_event(request: &HttpRequest<'_>, context: &EventContext<'_>) -> Value {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target, ""));
    let source_ip = request.peer.ip().to_string();

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in request.headers {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        headers
            .entry(name)
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    // Added by API Gateway; the functions must not trust them, and their tests say so.
    let forwarded = match headers.get("x-forwarded-for") {
        Some(client_sent) => format!("{client_sent}, {source_ip}"),
        None => source_ip.clone(),
    };
    headers.insert("x-forwarded-for".to_owned(), forwarded);
    headers.insert(
        "x-forwarded-port".to_owned(),
        request.local_port.to_string(),
    );
    headers.insert("x-forwarded-proto".to_owned(), "http".to_owned());

    let host = headers
        .get("host")
        .cloned()
        .unwrap_or_else(|| format!("127.0.0.1:{}", request.local_port));
    let domain_prefix = host.split(['.', ':']).next().unwrap_or_default().to_owned();
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let route_key = context.route_key.to_string();

    let mut event = Map::new();
    event.insert("version".into(), "2.0".into());
    event.insert("routeKey".into(), route_key.clone().into());
    event.insert("rawPath".into(), path.into());
    event.insert("rawQueryString".into(), query.into());
    if !cookies.is_empty() {
        event.insert("cookies".into(), cookies.into());
    }
    event.insert("headers".into(), json!(headers));
    if !query.is_empty() {
        event.insert(
            "queryStringParameters".into(),
            json!(query_parameters(query)),
        );
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": domain_prefix,
            "http": {
                "method": request.method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": context.request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": clf_time(context.epoch_ms),
            "timeEpoch": context.epoch_ms,
        }),
    );
    let text = headers.get("content-type").is_some_and(|ct| is_text(ct));
    if !request.body.is_empty() {
        let body = match std::str::from_utf8(request.body) {
            Ok(body) if text => body.to_owned(),
            _ => BASE64.encode(request.body),
        };
        event.insert("body".into(), body.into());
    }
    event.insert(
        "isBase64Encoded".into(),
        (!request.body.is_empty() && !text).into(),
    );
    Value::Object(event)
}

/// Decoded query parameters, repeated names joined by commas (payload 2.0).
fn query_parameters(query: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value);
        out.entry(decode(name))
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// Media types whose bodies travel as text: `text/*`, JSON and XML.
fn is_text(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(essence.as_str(), "application/json" | "application/xml")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
}

/// `requestContext.time`: `23/Nov/2026:14:30:00 +0000` (UTC, the common log format).
fn clf_time(epoch_ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = epoch_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, for dates after 1970).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[usize::try_from(month - 1).unwrap_or_default()],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Responses → HTTP

/// An HTTP response ready to be written.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    fn message(status: u16, message: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: json!({ "message": message }).to_string().into_bytes(),
        }
    }

    /// API Gateway's answer to a failed integration.
    pub fn internal_error() -> Self {
        Self::message(500, "Internal Server Error")
    }

    fn not_found() -> Self {
        Self::message(404, "Not Found")
    }

    fn to_bytes(&self, request_id: &str, head_only: bool, close: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("apigw-requestid: {request_id}\r\n"));
        if close {
            head.push_str("connection: close\r\n");
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
        let mut bytes = head.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The HTTP response API Gateway makes of a function's payload 2.0 result.
pub fn http_response(payload: &[u8]) -> Result<HttpResponse, String> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the function's result is not JSON: {e}"))?;
    let Some(status) = value.get("statusCode") else {
        // A result without statusCode is the body of a 200 JSON response.
        return Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: payload.to_vec(),
        });
    };
    let status = status
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| format!("statusCode {status} is not an HTTP status"))?;
    let mut headers = Vec::new();
    if let Some(map) = value.get("headers").and_then(Value::as_object) {
        for (name, v) in map {
            let lower = name.to_ascii_lowercase();
            // Framing is the gateway's business.
            if matches!(
                lower.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            ) {
                continue;
            }
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            headers.push((lower, v));
        }
    }
    for cookie in value
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(cookie) = cookie.as_str() {
            headers.push(("set-cookie".to_owned(), cookie.to_owned()));
        }
    }
    let body = match value.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(body)) if value["isBase64Encoded"] == Value::Bool(true) => BASE64
            .decode(body)
            .map_err(|e| format!("isBase64Encoded, but the body is not base64: {e}"))?,
        Some(Value::String(body)) => body.clone().into_bytes(),
        Some(other) => return Err(format!("body is not a string: {other}")),
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

// ---------------------------------------------------------------------------------------------
// Function instances

/// An event for an instance, and where its result goes (`None`: the invocation failed).
#[derive(Debug)]
struct Job {
    event: Vec<u8>,
    reply: oneshot::Sender<Option<Result<Vec<u8>, Vec<u8>>>>,
}

/// Polls the process until it has exited; its exit report.
async fn exited(process: &mut FunctionProcess) -> String {
    loop {
        if let Some(report) = process.exit_report() {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `step`, unless the process exits first; errors carry the end of the process's output.
async fn unless_exited<T>(
    process: &mut FunctionProcess,
    step: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let outcome = tokio::select! {
        result = step => Ok(result),
        report = exited(process) => Err(report),
    };
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(process.explain(error)),
        Err(report) => Err(report.into()),
    }
}

/// One function instance: init, then one job at a time. Returns why it stopped serving.
async fn instance(
    mut api: RuntimeApi,
    mut process: FunctionProcess,
    timeouts: (Duration, Duration),
    ready: oneshot::Sender<Result<(), Error>>,
    mut jobs: mpsc::Receiver<Job>,
) -> Error {
    let (init_timeout, invoke_timeout) = timeouts;
    let name = process.kind.name();
    let mut poll = match unless_exited(&mut process, api.next_poll(init_timeout)).await {
        Ok(poll) => poll,
        Err(error) => {
            let error: Error = format!("{name} did not finish its init: {error}").into();
            let _ = ready.send(Err(error));
            return format!("{name} did not finish its init").into();
        }
    };
    let _ = ready.send(Ok(()));
    while let Some(job) = jobs.recv().await {
        match unless_exited(&mut process, api.deliver(poll, job.event, invoke_timeout)).await {
            Ok(invocation) => {
                let result = match invocation.kind {
                    PostKind::Response => Ok(invocation.body),
                    PostKind::Error | PostKind::InitError => Err(invocation.body),
                };
                let _ = job.reply.send(Some(result));
            }
            Err(error) => {
                let _ = job.reply.send(None);
                return format!("{name} failed an invocation: {error}").into();
            }
        }
        poll = match unless_exited(&mut process, api.next_poll(invoke_timeout)).await {
            Ok(poll) => poll,
            Err(error) => return format!("{name} did not ask for its next event: {error}").into(),
        };
    }
    format!("{name}: the gateway stopped").into()
}

// ---------------------------------------------------------------------------------------------
// The server

#[derive(Debug)]
struct Gateway {
    routes: Routes,
    instances: BTreeMap<&'static str, mpsc::Sender<Job>>,
    local_port: u16,
    seq: AtomicU64,
}

impl Gateway {
    /// An id shaped like API Gateway's (`JKJaXmPLvHcESHA=`), unique within this run.
    fn request_id(&self, epoch_ms: u64) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; 11];
        raw[..6].copy_from_slice(&epoch_ms.to_be_bytes()[2..]);
        raw[6..].copy_from_slice(&seq.to_be_bytes()[3..]);
        BASE64.encode(raw)
    }

    async fn handle(&self, head: &Head, body: &[u8], peer: SocketAddr) -> (HttpResponse, String) {
        let (method, target) = head.method_and_path();
        let epoch_ms = epoch_ms();
        let request_id = self.request_id(epoch_ms);
        let path = target.split('?').next().unwrap_or_default();
        let Some((route_key, kind)) = self.routes.find(method, path) else {
            eprintln!("gateway: {method} {path} -> no route: 404");
            return (HttpResponse::not_found(), request_id);
        };
        let request = HttpRequest {
            method,
            target,
            headers: &head.headers,
            body,
            peer,
            local_port: self.local_port,
        };
        let context = EventContext {
            route_key,
            request_id: &request_id,
            epoch_ms,
        };
        let event = http_api_event(&request, &context).to_string().into_bytes();
        let (reply, result) = oneshot::channel();
        let sent = match self.instances.get(kind.name()) {
            Some(instance) => instance.send(Job { event, reply }).await.is_ok(),
            None => false,
        };
        let result = if sent {
            result.await.ok().flatten()
        } else {
            None
        };
        let response = match result {
            Some(Ok(payload)) => http_response(&payload).unwrap_or_else(|problem| {
                eprintln!(
                    "gateway: {} answered with a bad result: {problem}",
                    kind.name()
                );
                HttpResponse::internal_error()
            }),
            Some(Err(error)) => {
                eprintln!(
                    "gateway: {} posted an invocation error: {}",
                    kind.name(),
                    String::from_utf8_lossy(&error)
                );
                HttpResponse::internal_error()
            }
            None => HttpResponse::internal_error(),
        };
        eprintln!(
            "gateway: {method} {path} -> {route_key} ({}): {}",
            kind.name(),
            response.status
        );
        (response, request_id)
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    while let Some(head) = read_head(&mut reader).await? {
        let (method, _) = head.method_and_path();
        let http10 = head.start_line.ends_with("HTTP/1.0");
        let close = http10
            || head
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let too_large = match head.framing() {
            Framing::Length(n) => n > MAX_BODY_BYTES,
            Framing::Chunked => false,
            Framing::Unknown => {
                let response = HttpResponse::message(400, "Bad Request");
                writer
                    .write_all(&response.to_bytes("-", false, true))
                    .await?;
                return Ok(());
            }
        };
        if too_large {
            let response = HttpResponse::message(413, "Request Entity Too Large");
            writer
                .write_all(&response.to_bytes("-", false, true))
                .await?;
            return Ok(());
        }
        if head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = read_body(&mut reader, &head).await?;
        let (response, request_id) = gateway.handle(&head, &body, peer).await;
        let head_only = method.eq_ignore_ascii_case("HEAD");
        writer
            .write_all(&response.to_bytes(&request_id, head_only, close))
            .await?;
        if close {
            break;
        }
    }
    Ok(())
}

/// `smla-bench gateway`: starts the functions, waits for their init, then serves until a
/// function fails or the process is stopped.
pub async fn run(args: Args) -> Result<(), Error> {
    let stack = Stack::from_env()?;
    let routes = Routes::new(args.routes);
    for (i, (kind, _)) in args.functions.iter().enumerate() {
        if args.functions[..i].iter().any(|(k, _)| k == kind) {
            return Err(format!("--function {} is given twice", kind.name()).into());
        }
    }
    for kind in routes.kinds() {
        if !args.functions.iter().any(|(k, _)| *k == kind) {
            return Err(
                format!("a route goes to {}, which no --function names", kind.name()).into(),
            );
        }
    }
    // Every override must be a variable some function reads (the configuration contract): a
    // typo would otherwise test the default while claiming another value.
    for (name, _) in &args.env {
        let known = args.functions.iter().any(|(kind, _)| reads(*kind, name));
        if !known {
            return Err(format!("--env {name}: no function reads {name}").into());
        }
    }

    let timeouts = (
        Duration::from_secs(args.init_timeout),
        Duration::from_secs(args.invoke_timeout),
    );
    let (failed_tx, mut failed) = mpsc::unbounded_channel::<Error>();
    let mut instances = BTreeMap::new();
    let mut readiness = Vec::new();
    for (kind, binary) in &args.functions {
        let api = RuntimeApi::start(kind.name()).await?;
        let overrides: Vec<(&str, String)> = args
            .env
            .iter()
            .filter(|(name, _)| reads(*kind, name))
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        let executable = Executable {
            launcher: &args.launcher,
            binary,
        };
        let process = FunctionProcess::spawn_executable(
            *kind,
            executable,
            &stack,
            &api,
            &args.logs,
            kind.name(),
            &overrides,
        )?;
        let (jobs_tx, jobs) = mpsc::channel(64);
        let (ready_tx, ready) = oneshot::channel();
        let failed_tx = failed_tx.clone();
        tokio::spawn(async move {
            let why = instance(api, process, timeouts, ready_tx, jobs).await;
            let _ = failed_tx.send(why);
        });
        instances.insert(kind.name(), jobs_tx);
        readiness.push(ready);
    }
    for ready in readiness {
        ready
            .await
            .map_err(|_| Error::from("a function instance stopped during init"))??;
    }

    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let gateway = Arc::new(Gateway {
        routes,
        instances,
        local_port: args.port,
        seq: AtomicU64::new(0),
    });
    let names: Vec<&str> = args.functions.iter().map(|(k, _)| k.name()).collect();
    eprintln!(
        "gateway: {} initialised; listening on http://127.0.0.1:{}",
        names.join(" and "),
        args.port
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = accepted?;
                let gateway = Arc::clone(&gateway);
                tokio::spawn(async move {
                    // A broken connection ends that connection only.
                    let _ = serve_connection(stream, peer, gateway).await;
                });
            }
            why = failed.recv() => {
                return Err(why.unwrap_or_else(|| "every function instance stopped".into()));
            }
        }
    }
}

/// Whether the function of `kind` reads the configuration variable `name`.
fn reads(kind: Kind, name: &str) -> bool {
    let program = match kind {
        Kind::Predict => config::Program::Predict,
        Kind::Token => config::Program::Token,
        Kind::Null | Kind::RuntimeNull => return false,
    };
    config::lookup(name).is_some_and(|var| var.read_by(program))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::request::LambdaRequest;
    use lambda_http::{RequestExt, RequestPayloadExt};

    fn routes() -> Routes {
        Routes::new(
            [
                ("ANY /token", Kind::Token),
                ("ANY /.well-known/jwks.json", Kind::Token),
                ("ANY /predict", Kind::Predict),
                ("GET /model", Kind::Predict),
                ("$default", Kind::Predict),
            ]
            .into_iter()
            .map(|(key, kind)| (key.parse().unwrap(), kind))
            .collect(),
        )
    }

    fn request<'a>(
        method: &'a str,
        target: &'a str,
        headers: &'a [(String, String)],
        body: &'a [u8],
    ) -> HttpRequest<'a> {
        HttpRequest {
            method,
            target,
            headers,
            body,
            peer: "127.0.0.1:40000".parse().unwrap(),
            local_port: 9001,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn event_for(request: &HttpRequest<'_>) -> Value {
        let key: RouteKey = "ANY /token".parse().unwrap();
        let context = EventContext {
            route_key: &key,
            request_id: "JKJaXmPLvHcESHA=",
            epoch_ms: 1_795_444_200_000,
        };
        http_api_event(request, &context)
    }

    mod routing {
        use super::*;

        #[test]
        fn a_declared_path_goes_to_its_function_whatever_the_method() {
            let routes = routes();
            let (key, kind) = routes.find("DELETE", "/token").unwrap();
            assert_eq!(key.to_string(), "ANY /token");
            assert_eq!(kind, Kind::Token);
        }

        #[test]
        fn a_method_route_matches_only_its_method() {
            assert_eq!(
                routes().find("GET", "/model").unwrap().0.to_string(),
                "GET /model"
            );
            assert_eq!(
                routes().find("POST", "/model").unwrap().0.to_string(),
                "$default"
            );
        }

        #[test]
        fn unknown_paths_and_near_misses_go_to_default() {
            let routes = routes();
            for path in ["/nope", "/predict/", "/Predict", "/token/x"] {
                let (key, kind) = routes.find("POST", path).unwrap();
                assert_eq!(
                    (key.to_string().as_str(), kind),
                    ("$default", Kind::Predict)
                );
            }
        }

        #[test]
        fn without_default_an_unknown_path_has_no_route() {
            let routes = Routes::new(vec![("POST /token".parse().unwrap(), Kind::Token)]);
            assert!(routes.find("POST", "/nope").is_none());
        }

        #[test]
        fn malformed_route_keys_are_refused() {
            for key in ["/token", "POST token", "", "$DEFAULT"] {
                assert!(key.parse::<RouteKey>().is_err(), "{key}");
            }
        }
    }

    mod events {
        use super::*;

        #[test]
        fn lambda_http_reads_the_event_as_an_http_api_request_from_the_tcp_peer() {
            let h = headers(&[
                ("Host", "127.0.0.1:9001"),
                ("Content-Type", "application/json"),
                ("Authorization", "Bearer t.o.k"),
                ("X-Forwarded-For", "198.51.100.1"),
            ]);
            let body = br#"{"data": [5.1, 3.5, 1.4, 0.2]}"#;
            let event = event_for(&request("POST", "/predict?a=1", &h, body));

            let parsed: LambdaRequest = serde_json::from_value(event.clone()).unwrap();
            assert!(matches!(parsed, LambdaRequest::ApiGatewayV2(_)));
            let request: lambda_http::Request = parsed.into();
            assert_eq!(request.method(), "POST");
            assert_eq!(request.uri().path(), "/predict");
            assert_eq!(request.headers()["authorization"], "Bearer t.o.k");
            let value: Value = request.payload().unwrap().unwrap();
            assert_eq!(value["data"][0], 5.1);
            assert_eq!(request.query_string_parameters().first("a"), Some("1"));
            assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
            // A forwarding header the client sent is kept and extended, never trusted.
            assert_eq!(
                event["headers"]["x-forwarded-for"],
                "198.51.100.1, 127.0.0.1"
            );
            assert_eq!(event["isBase64Encoded"], false);
        }

        #[test]
        fn form_bodies_travel_base64_encoded_and_json_bodies_as_text() {
            let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
            let event = event_for(&request("POST", "/token", &form, b"grant_type=x"));
            assert_eq!(event["isBase64Encoded"], true);
            assert_eq!(event["body"], BASE64.encode("grant_type=x"));

            let json = headers(&[("content-type", "application/problem+json; charset=utf-8")]);
            let event = event_for(&request("POST", "/token", &json, b"{}"));
            assert_eq!(
                (&event["isBase64Encoded"], &event["body"]),
                (&json!(false), &json!("{}"))
            );
        }

        #[test]
        fn a_request_without_body_has_no_body_field() {
            let event = event_for(&request("GET", "/health", &[], b""));
            assert!(event.get("body").is_none());
            assert_eq!(event["isBase64Encoded"], false);
            assert!(event.get("queryStringParameters").is_none());
        }

        #[test]
        fn repeated_headers_and_parameters_are_joined_and_cookies_listed() {
            let h = headers(&[("Accept", "a/b"), ("accept", "c/d"), ("Cookie", "x=1; y=2")]);
            let event = event_for(&request("GET", "/x?p=1&p=%32&q", &h, b""));
            assert_eq!(event["headers"]["accept"], "a/b,c/d");
            assert!(event["headers"].get("cookie").is_none());
            assert_eq!(event["cookies"], json!(["x=1", "y=2"]));
            assert_eq!(event["queryStringParameters"], json!({"p": "1,2", "q": ""}));
            assert_eq!(event["rawQueryString"], "p=1&p=%32&q");
        }

        #[test]
        fn time_is_the_common_log_format_in_utc() {
            // The pair of events/predict.json.
            assert_eq!(clf_time(1_795_444_200_000), "23/Nov/2026:14:30:00 +0000");
            assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
            assert_eq!(clf_time(951_782_400_000), "29/Feb/2000:00:00:00 +0000");
        }
    }

    mod responses {
        use super::*;

        #[test]
        fn a_result_becomes_status_headers_cookies_and_body() {
            let payload = json!({
                "statusCode": 429,
                "headers": {"Content-Type": "application/problem+json", "retry-after": "7",
                            "content-length": "999"},
                "cookies": ["a=1"],
                "body": "{\"status\":429}",
                "isBase64Encoded": false,
            });
            let response = http_response(payload.to_string().as_bytes()).unwrap();
            assert_eq!(response.status, 429);
            assert!(
                response
                    .headers
                    .contains(&("retry-after".to_owned(), "7".to_owned()))
            );
            assert!(
                response
                    .headers
                    .contains(&("set-cookie".to_owned(), "a=1".to_owned()))
            );
            assert!(!response.headers.iter().any(|(n, _)| n == "content-length"));
            assert_eq!(response.body, b"{\"status\":429}");
        }

        #[test]
        fn base64_bodies_are_decoded() {
            let payload = json!({"statusCode": 200, "body": BASE64.encode([0u8, 159, 146, 150]),
                                 "isBase64Encoded": true});
            let response = http_response(payload.to_string().as_bytes()).unwrap();
            assert_eq!(response.body, [0u8, 159, 146, 150]);
        }

        #[test]
        fn json_without_status_code_is_a_200_json_body() {
            let response = http_response(br#"{"hello":"world"}"#).unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.body, br#"{"hello":"world"}"#);
        }

        #[test]
        fn malformed_results_are_refused() {
            assert!(http_response(b"not json").is_err());
            assert!(http_response(br#"{"statusCode": 99}"#).is_err());
            assert!(
                http_response(br#"{"statusCode": 200, "body": "!", "isBase64Encoded": true}"#)
                    .is_err()
            );
        }

        #[test]
        fn the_wire_form_carries_length_and_request_id_and_no_body_for_head() {
            let response = HttpResponse::not_found();
            let wire = String::from_utf8(response.to_bytes("id=", false, false)).unwrap();
            assert!(wire.starts_with("HTTP/1.1 404 Not Found\r\n"), "{wire}");
            assert!(wire.contains("apigw-requestid: id=\r\n"));
            assert!(wire.ends_with("content-length: 23\r\n\r\n{\"message\":\"Not Found\"}"));
            let head = String::from_utf8(response.to_bytes("id=", true, true)).unwrap();
            assert!(
                head.ends_with("content-length: 23\r\n\r\n") && head.contains("connection: close")
            );
        }
    }
}
