//! A counting proxy between a function and DynamoDB Local.
//!
//! DynamoDB Local has no metrics, and the function's `RateLimiter::stats()` lives inside the
//! process under test. So the function's `AWS_ENDPOINT_URL_DYNAMODB` points here instead: each
//! request is relayed unchanged and counted by its `X-Amz-Target` (`DynamoDB_20120810.UpdateItem`,
//! ...), and responses are scanned for `ConditionalCheckFailedException` (a failed conditional
//! write: billed like a write, and the evidence of a refusal or a wrong guess).

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Error;
use crate::http1::{Framing, read_head};

const CONDITION_FAILED: &[u8] = b"ConditionalCheckFailedException";

/// Requests seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub update_item: u64,
    pub get_item: u64,
    pub other: u64,
    /// Responses that were `ConditionalCheckFailedException`.
    pub condition_failed: u64,
    /// Requests the proxy relayed without parsing (chunked bodies); should stay 0.
    pub unparsed: u64,
}

impl Counts {
    /// Every request sent.
    pub fn calls(&self) -> u64 {
        self.update_item + self.get_item + self.other
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            update_item: self.update_item - earlier.update_item,
            get_item: self.get_item - earlier.get_item,
            other: self.other - earlier.other,
            condition_failed: self.condition_failed - earlier.condition_failed,
            unparsed: self.unparsed - earlier.unparsed,
        }
    }
}

/// The running proxy. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct CountingProxy {
    addr: std::net::SocketAddr,
    counts: Arc<Mutex<Counts>>,
    accept: JoinHandle<()>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl CountingProxy {
    /// Listens on a free port and relays to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Result<Self, Error> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let shared = Arc::clone(&counts);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (upstream, counts) = (upstream.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    let _ = relay(stream, &upstream, counts).await;
                });
            }
        });
        Ok(Self {
            addr,
            counts,
            accept,
        })
    }

    /// The URL to give a function as `AWS_ENDPOINT_URL_DYNAMODB`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counts(&self) -> Counts {
        *self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn bump(counts: &Mutex<Counts>, f: impl FnOnce(&mut Counts)) {
    f(&mut counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner));
}

async fn relay(client: TcpStream, upstream: &str, counts: Arc<Mutex<Counts>>) -> Result<(), Error> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();

    let down_counts = Arc::clone(&counts);
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut window: Vec<u8> = Vec::new();
        loop {
            let n = server_read.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            // Count the marker even when it straddles two reads: the window keeps the last
            // `len − 1` bytes, which can never hold a whole occurrence on their own.
            window.extend_from_slice(&buf[..n]);
            let found = window
                .windows(CONDITION_FAILED.len())
                .filter(|w| *w == CONDITION_FAILED)
                .count() as u64;
            if found > 0 {
                bump(&down_counts, |c| c.condition_failed += found);
            }
            let keep = window.len().saturating_sub(CONDITION_FAILED.len() - 1);
            window.drain(..keep);
            client_write.write_all(&buf[..n]).await?;
        }
        client_write.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });

    let mut reader = BufReader::new(client_read);
    while let Some(head) = read_head(&mut reader).await? {
        let target = head.header("x-amz-target").unwrap_or("").to_owned();
        bump(&counts, |c| match target.rsplit('.').next() {
            Some("UpdateItem") => c.update_item += 1,
            Some("GetItem") => c.get_item += 1,
            _ => c.other += 1,
        });
        match head.framing() {
            Framing::Length(n) => {
                let mut message = head.raw;
                let start = message.len();
                message.resize(start + n, 0);
                reader.read_exact(&mut message[start..]).await?;
                server_write.write_all(&message).await?;
            }
            Framing::Chunked | Framing::Unknown => {
                bump(&counts, |c| c.unparsed += 1);
                server_write.write_all(&head.raw).await?;
                tokio::io::copy(&mut reader, &mut server_write).await?;
                break;
            }
        }
    }
    server_write.shutdown().await?;
    let _ = down.await;
    Ok(())
}
