//! Just enough HTTP/1.1 to play the Lambda Runtime API and to watch DynamoDB requests go by.
//!
//! Why not hyper's server: the functions build hyper without its `server` feature, and turning
//! it on here would rebuild hyper and everything above it (the AWS SDK, lambda_runtime) as a
//! second copy. The harness would then measure its DynamoDB floor with a different build of the
//! SDK than the functions run. The messages involved are small and simple (a `Content-Length`
//! or chunked body, keep-alive connections), so a hundred lines cover them.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Largest request or response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A request or response head: the start line, the headers, and the raw bytes as received.
#[derive(Debug, Clone)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How the body is delimited.
    pub fn framing(&self) -> Framing {
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return Framing::Chunked;
        }
        match self.header("content-length").map(str::trim) {
            Some(n) => n.parse().map_or(Framing::Unknown, Framing::Length),
            None => Framing::Length(0),
        }
    }

    /// `(method, path)` of a request head.
    pub fn method_and_path(&self) -> (&str, &str) {
        let mut parts = self.start_line.split(' ');
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// A malformed `Content-Length`.
    Unknown,
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}

/// Reads one message head. `None` when the peer closed the connection between messages.
pub async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Head>> {
    let mut raw = Vec::with_capacity(512);
    let mut lines: Vec<String> = Vec::new();
    loop {
        let start = raw.len();
        let n = reader.read_until(b'\n', &mut raw).await?;
        if n == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(invalid("connection closed inside a message head"))
            };
        }
        if raw.len() > MAX_HEAD_BYTES {
            return Err(invalid("message head too large"));
        }
        let line = String::from_utf8_lossy(&raw[start..])
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        if line.is_empty() {
            if lines.is_empty() {
                // Tolerate a stray CRLF between messages (RFC 9112 §2.2).
                raw.clear();
                continue;
            }
            break;
        }
        lines.push(line);
    }
    let start_line = lines.remove(0);
    let headers = lines
        .into_iter()
        .filter_map(|line| {
            line.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    Ok(Some(Head {
        start_line,
        headers,
        raw,
    }))
}

/// Reads the body `head` announces.
pub async fn read_body<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    head: &Head,
) -> std::io::Result<Vec<u8>> {
    match head.framing() {
        Framing::Length(n) => {
            let mut body = vec![0; n];
            reader.read_exact(&mut body).await?;
            Ok(body)
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await?;
                let size = line.trim().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size.trim(), 16)
                    .map_err(|_| invalid("bad chunk size"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                            return Ok(body);
                        }
                    }
                }
                let start = body.len();
                body.resize(start + size, 0);
                reader.read_exact(&mut body[start..]).await?;
                line.clear();
                reader.read_line(&mut line).await?;
            }
        }
        Framing::Unknown => Err(invalid("malformed Content-Length")),
    }
}

/// A complete response with a `Content-Length` body, as one buffer (one write, one segment:
/// no Nagle delay between head and body).
pub fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn reads_two_keep_alive_requests_with_both_framings() {
        let wire = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nX-Amz-Target: T.One\r\n\r\nabc\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3;x=1\r\nllo\r\n0\r\n\r\n";
        let mut reader = BufReader::new(&wire[..]);
        let first = read_head(&mut reader).await.unwrap().unwrap();
        assert_eq!(first.method_and_path(), ("POST", "/a"));
        assert_eq!(first.header("x-amz-target"), Some("T.One"));
        assert_eq!(read_body(&mut reader, &first).await.unwrap(), b"abc");
        let second = read_head(&mut reader).await.unwrap().unwrap();
        assert_eq!(second.framing(), Framing::Chunked);
        assert_eq!(read_body(&mut reader, &second).await.unwrap(), b"hello");
        assert!(read_head(&mut reader).await.unwrap().is_none());
    }

    #[test]
    fn a_response_is_one_buffer_with_its_length() {
        let bytes = response(
            "202 Accepted",
            &[("Content-Type", "application/json")],
            b"{}",
        );
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
