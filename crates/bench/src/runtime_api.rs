//! A fake Lambda Runtime API on 127.0.0.1: the harness plays the Lambda service.
//!
//! ```text
//!   harness (controller)                  this server                     function process
//!                                            ◀── GET  /2018-06-01/runtime/invocation/next ──  (after init)
//!   next_poll() ◀── Poll { at } ─────────────
//!   deliver(poll, event) ─ Delivery ────────▶ 200 + event ─────────────────────────────────▶  sent_at
//!                                            ◀── POST /2018-06-01/runtime/invocation/{id}/response
//!   ◀── Posted { at } ───────────────────────  202                                            received_at
//! ```
//!
//! - **Init** is `Poll::at − spawn instant`: the first `/next` is the runtime saying "ready",
//!   which is also where Lambda's `Init Duration` ends.
//! - **Invocation duration** is `received_at − sent_at`: from the instant the event is handed
//!   out to the instant the response body has been read — what Lambda bills as `Duration`.
//!
//! One controller drives one function process; polls and posts travel over channels, so the
//! server never decides anything. `.../error` and `/runtime/init/error` are reported as such.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Error;
use crate::http1::{read_body, read_head, response};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";
/// The deadline handed to the function with each event (the template's `Timeout: 5`).
const FUNCTION_TIMEOUT_MS: u64 = 5_000;

/// The function asked for its next event at `at`.
#[derive(Debug)]
pub struct Poll {
    pub at: Instant,
    reply: oneshot::Sender<Delivery>,
}

#[derive(Debug)]
struct Delivery {
    request_id: String,
    body: Vec<u8>,
    sent: oneshot::Sender<Instant>,
}

/// What the function posted back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostKind {
    Response,
    Error,
    InitError,
}

#[derive(Debug)]
struct Posted {
    kind: PostKind,
    request_id: Option<String>,
    at: Instant,
    body: Vec<u8>,
}

/// One completed invocation.
#[derive(Debug)]
pub struct Invocation {
    pub sent_at: Instant,
    pub received_at: Instant,
    pub kind: PostKind,
    pub body: Vec<u8>,
}

impl Invocation {
    /// From handing out the event to receiving the response, in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.received_at
            .saturating_duration_since(self.sent_at)
            .as_secs_f64()
            * 1e3
    }

    /// The HTTP status of an API Gateway (payload 2.0) response.
    pub fn status(&self) -> Option<u16> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value["statusCode"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
    }

    /// The response's body text (API Gateway response `body`), for error messages.
    pub fn body_text(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["body"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// The server and its controller end.
#[derive(Debug)]
pub struct RuntimeApi {
    addr: SocketAddr,
    polls: mpsc::UnboundedReceiver<Poll>,
    posts: mpsc::UnboundedReceiver<Posted>,
    accept: JoinHandle<()>,
    next_id: u64,
    /// A poll taken by [`Self::wait_idle`] and not yet answered.
    pending: Option<Poll>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl RuntimeApi {
    /// Listens on a free port of 127.0.0.1; `function_name` goes into the invoked ARN.
    pub async fn start(function_name: &str) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (poll_tx, polls) = mpsc::unbounded_channel();
        let (post_tx, posts) = mpsc::unbounded_channel();
        let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}");
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (poll_tx, post_tx, arn) = (poll_tx.clone(), post_tx.clone(), arn.clone());
                tokio::spawn(async move {
                    // A connection error ends that connection only; the controller notices a
                    // function that stopped talking through its timeouts.
                    let _ = serve(stream, poll_tx, post_tx, arn).await;
                });
            }
        });
        Ok(Self {
            addr,
            polls,
            posts,
            accept,
            next_id: 0,
            pending: None,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Waits until the function is idle, blocked on `/next` (its previous invocation and
    /// everything it does after posting the response are over); the poll is kept for the next
    /// [`Self::invoke`].
    pub async fn wait_idle(&mut self, timeout: Duration) -> Result<(), Error> {
        if self.pending.is_none() {
            self.pending = Some(self.next_poll(timeout).await?);
        }
        Ok(())
    }

    /// Waits for the function to ask for an event.
    pub async fn next_poll(&mut self, timeout: Duration) -> Result<Poll, Error> {
        if let Some(poll) = self.pending.take() {
            return Ok(poll);
        }
        let wait = async {
            tokio::select! {
                poll = self.polls.recv() => poll.ok_or_else(|| Error::from("runtime API stopped")),
                posted = self.posts.recv() => Err(unexpected(posted)),
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::from(format!("no /next poll within {timeout:?}")))?
    }

    /// Hands `event` to a waiting poll and waits for the function's answer.
    pub async fn deliver(
        &mut self,
        poll: Poll,
        event: Vec<u8>,
        timeout: Duration,
    ) -> Result<Invocation, Error> {
        self.next_id += 1;
        let request_id = format!("bench-{:08}", self.next_id);
        let (sent_tx, sent_rx) = oneshot::channel();
        poll.reply
            .send(Delivery {
                request_id: request_id.clone(),
                body: event,
                sent: sent_tx,
            })
            .map_err(|_| Error::from("the function's /next connection closed"))?;
        let wait = async {
            let sent_at = sent_rx
                .await
                .map_err(|_| Error::from("the event could not be written"))?;
            loop {
                let posted = self
                    .posts
                    .recv()
                    .await
                    .ok_or_else(|| Error::from("runtime API stopped"))?;
                match (&posted.kind, &posted.request_id) {
                    (PostKind::InitError, _) => return Err(unexpected(Some(posted))),
                    (_, Some(id)) if *id == request_id => {
                        return Ok(Invocation {
                            sent_at,
                            received_at: posted.at,
                            kind: posted.kind,
                            body: posted.body,
                        });
                    }
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::from(format!("no response within {timeout:?}")))?
    }

    /// [`Self::next_poll`] then [`Self::deliver`].
    pub async fn invoke(&mut self, event: Vec<u8>, timeout: Duration) -> Result<Invocation, Error> {
        let poll = self.next_poll(timeout).await?;
        self.deliver(poll, event, timeout).await
    }
}

fn unexpected(posted: Option<Posted>) -> Error {
    match posted {
        Some(p) => format!(
            "the function posted {:?} unexpectedly: {}",
            p.kind,
            String::from_utf8_lossy(&p.body)
        )
        .into(),
        None => "runtime API stopped".into(),
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn serve(
    stream: TcpStream,
    polls: mpsc::UnboundedSender<Poll>,
    posts: mpsc::UnboundedSender<Posted>,
    arn: String,
) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    while let Some(head) = read_head(&mut reader).await? {
        let head_at = Instant::now();
        let body = read_body(&mut reader, &head).await?;
        let received_at = Instant::now();
        let (method, path) = head.method_and_path();
        match (method, path) {
            ("GET", NEXT) => {
                let (reply, delivery) = oneshot::channel();
                if polls.send(Poll { at: head_at, reply }).is_err() {
                    return Ok(());
                }
                let Ok(delivery) = delivery.await else {
                    return Ok(()); // the controller is done with this function
                };
                let deadline = (epoch_ms() + FUNCTION_TIMEOUT_MS).to_string();
                let trace = format!(
                    "Root=1-00000000-{:024x};Parent=0000000000000001;Sampled=0",
                    delivery.request_id.len()
                );
                let bytes = response(
                    "200 OK",
                    &[
                        ("Content-Type", "application/json"),
                        ("Lambda-Runtime-Aws-Request-Id", &delivery.request_id),
                        ("Lambda-Runtime-Deadline-Ms", &deadline),
                        ("Lambda-Runtime-Invoked-Function-Arn", &arn),
                        ("Lambda-Runtime-Trace-Id", &trace),
                    ],
                    &delivery.body,
                );
                let sent_at = Instant::now();
                writer.write_all(&bytes).await?;
                let _ = delivery.sent.send(sent_at);
            }
            ("POST", INIT_ERROR) => {
                let _ = posts.send(Posted {
                    kind: PostKind::InitError,
                    request_id: None,
                    at: received_at,
                    body,
                });
                writer.write_all(&accepted()).await?;
            }
            ("POST", p) if p.starts_with(INVOCATION_PREFIX) => {
                let rest = &p[INVOCATION_PREFIX.len()..];
                let kind = match rest.split_once('/') {
                    Some((_, "response")) => Some(PostKind::Response),
                    Some((_, "error")) => Some(PostKind::Error),
                    _ => None,
                };
                match (kind, rest.split_once('/')) {
                    (Some(kind), Some((id, _))) => {
                        let _ = posts.send(Posted {
                            kind,
                            request_id: Some(id.to_owned()),
                            at: received_at,
                            body,
                        });
                        writer.write_all(&accepted()).await?;
                    }
                    _ => writer.write_all(&not_found()).await?,
                }
            }
            _ => writer.write_all(&not_found()).await?,
        }
    }
    Ok(())
}

fn accepted() -> Vec<u8> {
    response(
        "202 Accepted",
        &[("Content-Type", "application/json")],
        br#"{"status":"OK"}"#,
    )
}

fn not_found() -> Vec<u8> {
    response(
        "404 Not Found",
        &[("Content-Type", "application/json")],
        br#"{"errorMessage":"not a Runtime API route","errorType":"NotFound"}"#,
    )
}
