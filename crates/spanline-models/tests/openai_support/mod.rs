//! A tiny loopback HTTP/1.1 server for the OpenAI client tests: it records
//! each request (head and body) and answers with hand-written bytes, so a
//! test controls status lines, chunk boundaries, disconnects and silence.
//!
//! Uses tokio's `TcpStream::try_read` / `try_write` (no `io-util` needed).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// `POST /v1/chat/completions HTTP/1.1`
    pub(crate) request_line: String,
    /// Header names lowercased, in order.
    pub(crate) headers: Vec<(String, String)>,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    /// The first header called `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// How the server answers one connection.
pub(crate) enum Reply {
    /// Write each piece separately (nodelay), then close.
    Pieces(Vec<Vec<u8>>),
    /// Write these bytes as soon as the connection is accepted, without
    /// reading anything, then wait for the client to close.
    Immediate(Vec<u8>),
    /// Accept and never read or write (a TLS client waits for the server's
    /// hello forever).
    Mute,
    /// Read the request and never answer (the connection stays open until
    /// the client closes it).
    Silent,
    /// Write the pieces, keep the connection open, and signal `closed` once
    /// the client has closed its end.
    PiecesThenWatch(Vec<Vec<u8>>, oneshot::Sender<()>),
    /// Write `head`, then `repeat` copies of `chunk` (an endless-looking
    /// body) until the client stops reading or the copies run out.
    Flood {
        /// Status line and headers.
        head: Vec<u8>,
        /// One write.
        chunk: Vec<u8>,
        /// How many writes at most.
        repeat: usize,
    },
}

/// A running server.
pub(crate) struct Server {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Recorded>,
    task: JoinHandle<()>,
}

impl Server {
    /// The API base URL (`http://127.0.0.1:PORT/v1`).
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    /// The next recorded request (panics if none arrives within 10 s).
    pub(crate) async fn request(&mut self) -> Recorded {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.requests.recv())
            .await
            .expect("a request within 10 s")
            .expect("server running")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve every connection with `reply(n)` (n counts connections from 0).
pub(crate) async fn serve(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, requests) = mpsc::unbounded_channel();
    let reply = Arc::new(reply);
    let task = tokio::spawn(async move {
        let mut n = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let r = reply(n);
            n += 1;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                match r {
                    Reply::Immediate(bytes) => {
                        let _ = write_all(&stream, &bytes).await;
                        wait_closed(&stream).await;
                        return;
                    }
                    Reply::Mute => {
                        wait_closed(&stream).await;
                        return;
                    }
                    _ => {}
                }
                if let Some(recorded) = read_request(&stream).await {
                    let _ = tx.send(recorded);
                    answer(&mut stream, r).await;
                }
            });
        }
    });
    Server {
        addr,
        requests,
        task,
    }
}

async fn answer(stream: &mut TcpStream, reply: Reply) {
    match reply {
        Reply::Pieces(pieces) => {
            for p in pieces {
                if write_all(stream, &p).await.is_err() {
                    return;
                }
            }
        }
        // Handled on accept.
        Reply::Immediate(_) | Reply::Mute => {}
        Reply::Silent => wait_closed(stream).await,
        Reply::PiecesThenWatch(pieces, closed) => {
            for p in pieces {
                if write_all(stream, &p).await.is_err() {
                    break;
                }
            }
            wait_closed(stream).await;
            let _ = closed.send(());
        }
        Reply::Flood {
            head,
            chunk,
            repeat,
        } => {
            if write_all(stream, &head).await.is_err() {
                return;
            }
            for _ in 0..repeat {
                if write_all(stream, &chunk).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Read until the peer closes (EOF or error).
async fn wait_closed(stream: &TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn read_request(stream: &TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        stream.readable().await.ok()?;
        match stream.try_read(&mut tmp) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        stream.readable().await.ok()?;
        match stream.try_read(&mut tmp) {
            Ok(0) => return None,
            Ok(n) => body.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
    Some(Recorded {
        request_line,
        headers,
        body,
    })
}

/// `HTTP/1.1 200 OK` with an event-stream content type and chunked body.
pub(crate) fn sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()
}

/// One HTTP chunk holding `data`.
pub(crate) fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The last chunk.
pub(crate) fn last_chunk() -> Vec<u8> {
    b"0\r\n\r\n".to_vec()
}

/// A whole response with `status` and a plain body (Content-Length).
pub(crate) fn plain(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// `event_stream` cut at `cuts` (byte offsets) into HTTP chunks, each chunk
/// written in two pieces (split inside the chunk), after the head; the
/// last chunk follows when `terminate`.
pub(crate) fn chunked_response(
    event_stream: &[u8],
    cuts: &[usize],
    terminate: bool,
) -> Vec<Vec<u8>> {
    let mut pieces = vec![sse_head()];
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&event_stream.len())) {
        let c = c.min(event_stream.len());
        if c <= last {
            continue;
        }
        let whole = chunk(&event_stream[last..c]);
        let mid = whole.len() / 2;
        pieces.push(whole[..mid].to_vec());
        pieces.push(whole[mid..].to_vec());
        last = c;
    }
    if terminate {
        pieces.push(last_chunk());
    }
    pieces
}

/// An SSE event `data: {json}` with a blank line.
pub(crate) fn data(json: &serde_json::Value) -> String {
    format!("data: {json}\n\n")
}

/// A chat completion chunk with text `content` (and optional finish).
pub(crate) fn text_chunk(model: &str, content: &str, finish: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-test-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish, "logprobs": null}],
    })
}

/// The final usage chunk (`choices: []`).
pub(crate) fn usage_chunk(model: &str, prompt: u64, completion: u64) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-test-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    })
}
