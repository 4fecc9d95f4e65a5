//! An "instant DynamoDB": answers every request at once with `200 {}` (a valid `UpdateItem`
//! output when nothing is asked back). A call against it costs what the SDK and a loopback
//! HTTP exchange cost, with no database work at all: the floor under the floor.

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Error;
use crate::http1::{read_body, read_head, response};

#[derive(Debug)]
pub struct InstantDynamo {
    addr: std::net::SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for InstantDynamo {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl InstantDynamo {
    pub async fn start() -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = serve(stream).await;
                });
            }
        });
        Ok(Self { addr, accept })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `client` with its endpoint pointed here.
    pub fn client(&self, client: &aws_sdk_dynamodb::Client) -> aws_sdk_dynamodb::Client {
        let config = client
            .config()
            .to_builder()
            .endpoint_url(self.endpoint())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}

async fn serve(stream: TcpStream) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let answer = response(
        "200 OK",
        &[
            ("Content-Type", "application/x-amz-json-1.0"),
            (
                "x-amzn-RequestId",
                "INSTANT0000000000000000000000000000000000000000000000",
            ),
        ],
        b"{}",
    );
    while let Some(head) = read_head(&mut reader).await? {
        read_body(&mut reader, &head).await?;
        writer.write_all(&answer).await?;
    }
    Ok(())
}
