//! OTLP receivers for end-to-end tests: a real OTLP/gRPC collector service
//! (the official `opentelemetry-proto` service types on tonic) and a minimal
//! OTLP/HTTP protobuf receiver, both bound to `127.0.0.1:0` and each running
//! on its own thread, so the test body can use any runtime flavour.
//!
//! `start()` keeps every request; `start_counting()` decodes every request
//! just the same but keeps only the totals in [`Counted`], so a benchmark
//! can push millions of spans through without the receiver's memory
//! growing. Receiver threads are named `otlp-grpc-recv`, `otlp-http-recv`
//! and `otlp-http-conn` so a benchmark can attribute their CPU time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;

/// A `Write` into a shared buffer.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buf").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    /// Everything written, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("buf").clone()).expect("utf8")
    }
}

/// What a receiver got.
#[derive(Clone, Default)]
pub struct Received(pub Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

impl Received {
    /// Every span received, in arrival order.
    pub fn spans(&self) -> Vec<ProtoSpan> {
        self.0
            .lock()
            .expect("received")
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter().cloned())
            .collect()
    }

    /// The `service.name` of every resource received.
    pub fn service_names(&self) -> Vec<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        self.0
            .lock()
            .expect("received")
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .filter_map(|rs| rs.resource.as_ref())
            .flat_map(|res| res.attributes.iter())
            .filter(|kv| kv.key == "service.name")
            .filter_map(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                },
            )
            .collect()
    }

    /// Wait until at least `n` spans arrived or `timeout` passed.
    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.spans().len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10)); // allow-sleep: wait_for_spans polls until its deadline.
        }
        self.spans().len() >= n
    }
}

/// Totals a receiver keeps for every request it decodes, whether or not it
/// stores the requests.
#[derive(Clone, Default)]
pub struct Counted(Arc<CountedInner>);

#[derive(Default)]
struct CountedInner {
    requests: AtomicU64,
    spans: AtomicU64,
}

impl Counted {
    /// Export requests decoded.
    pub fn requests(&self) -> u64 {
        self.0.requests.load(Ordering::Acquire)
    }

    /// Spans in the requests decoded.
    pub fn spans(&self) -> u64 {
        self.0.spans.load(Ordering::Acquire)
    }

    /// Wait until at least `n` spans were counted or `timeout` passed.
    pub fn wait_for_spans(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.spans() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1)); // allow-sleep: wait_for_spans polls until its deadline.
        }
        self.spans() >= n
    }

    fn record(&self, request: &ExportTraceServiceRequest) {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter())
            .map(|ss| ss.spans.len())
            .sum();
        self.0.spans.fetch_add(spans as u64, Ordering::AcqRel);
        self.0.requests.fetch_add(1, Ordering::AcqRel);
    }
}

/// Where a receiver puts what it decodes: always counted, kept unless the
/// receiver only counts.
#[derive(Clone)]
struct Sink {
    counted: Counted,
    keep: Option<Received>,
}

impl Sink {
    fn new(keep: bool) -> (Self, Received) {
        let received = Received::default();
        let sink = Sink {
            counted: Counted::default(),
            keep: keep.then(|| received.clone()),
        };
        (sink, received)
    }

    fn accept(&self, request: ExportTraceServiceRequest) {
        self.counted.record(&request);
        if let Some(keep) = &self.keep {
            keep.0.lock().expect("received").push(request);
        }
    }
}

struct Collector(Sink);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.accept(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running OTLP/gRPC receiver; stops when dropped.
pub struct GrpcReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it got (empty for a counting receiver).
    pub received: Received,
    /// Requests and spans decoded.
    pub counted: Counted,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GrpcReceiver {
    /// Start listening on `127.0.0.1:0`, keeping every request.
    pub fn start() -> Self {
        Self::spawn(true)
    }

    /// Start listening on `127.0.0.1:0`, decoding and counting every
    /// request but keeping none.
    pub fn start_counting() -> Self {
        Self::spawn(false)
    }

    fn spawn(keep: bool) -> Self {
        let (store, received) = Sink::new(keep);
        let counted = store.counted.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otlp-grpc-recv".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    addr_tx
                        .send(listener.local_addr().expect("addr"))
                        .expect("send addr");
                    // Like a real collector (Go sets TCP_NODELAY by default).
                    let incoming = tonic::transport::server::TcpIncoming::from(listener)
                        .with_nodelay(Some(true));
                    let _ = tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(Collector(store)))
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = stop_rx.await;
                        })
                        .await;
                });
            })
            .expect("receiver thread");
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("receiver address");
        GrpcReceiver {
            addr,
            received,
            counted,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for GrpcReceiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A minimal OTLP/HTTP receiver: plain `std::net`, one thread, answers
/// every POST with `200` and an empty protobuf body.
pub struct HttpReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it got (empty for a counting receiver).
    pub received: Received,
    /// Requests and spans decoded.
    pub counted: Counted,
    /// The request paths it saw (empty for a counting receiver).
    pub paths: Arc<Mutex<Vec<String>>>,
}

impl HttpReceiver {
    /// Start listening on `127.0.0.1:0`, keeping every request.
    pub fn start() -> Self {
        Self::spawn(true)
    }

    /// Start listening on `127.0.0.1:0`, decoding and counting every
    /// request but keeping none.
    pub fn start_counting() -> Self {
        Self::spawn(false)
    }

    fn spawn(keep: bool) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (store, received) = Sink::new(keep);
        let counted = store.counted.clone();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = keep.then(|| paths.clone());
        std::thread::Builder::new()
            .name("otlp-http-recv".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let (store, seen) = (store.clone(), seen.clone());
                    let _ = std::thread::Builder::new()
                        .name("otlp-http-conn".into())
                        .spawn(move || {
                            let _ = serve_connection(stream, &store, seen.as_ref());
                        });
                }
            })
            .expect("receiver thread");
        HttpReceiver {
            addr,
            received,
            counted,
            paths,
        }
    }
}

fn serve_connection(
    stream: std::net::TcpStream,
    store: &Sink,
    seen: Option<&Arc<Mutex<Vec<String>>>>,
) -> std::io::Result<()> {
    use prost::Message;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body)?;
        if let Some(seen) = seen {
            seen.lock().expect("paths").push(path);
        }
        if let Ok(req) = ExportTraceServiceRequest::decode(body.as_slice()) {
            store.accept(req);
        }
        writer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )?;
        writer.flush()?;
    }
}

/// Lowercase hex of `bytes` (OTLP carries ids as bytes).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
