//! The worker side: a registry of named, type-erased stages served through
//! `spanline.worker.v1.StageWorker`.
//!
//! Payloads are JSON (`serde_json`) unless a stage is hosted in another
//! [wire format](crate::wire): the worker decodes a stage's input from
//! `RunRequest.payload` and encodes its output into `RunResponse.payload`
//! (or one `GenerateChunk.payload` per streamed item, always JSON). A
//! payload that does not decode is `INVALID_ARGUMENT` with a content-free
//! message (position only, never a payload fragment).

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use opentelemetry::{KeyValue, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spanline_core::semconv::rpc;
use spanline_core::{Instrumented, RequestContext, Stage, StageError, Step, Telemetry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status};

use crate::GrpcError;
use crate::proto::stage_worker_server::{StageWorker, StageWorkerServer};
use crate::proto::{GenerateChunk, RunRequest, RunResponse};
use crate::server::{EdgeMode, ServerTraceLayer};
use crate::status::{to_status, truncate};
use crate::wire::{Decode, Encode, Json, decode_failed, encode_failed};

/// Default largest message a worker or client accepts or sends (4 MiB,
/// tonic's default).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// A stream of encoded items from a streaming stage.
type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StageError>> + Send + 'static>>;

#[async_trait]
trait ErasedStage: Send + Sync {
    async fn run(&self, payload: Bytes, ctx: &RequestContext) -> Result<Bytes, StageError>;
}

trait ErasedStream: Send + Sync {
    fn open(&self, payload: Bytes, ctx: RequestContext) -> Result<ByteStream, StageError>;
}

/// Decode a request payload in `F` (`INVALID_ARGUMENT` when it does not).
fn decode<F: Decode<T>, T>(payload: Bytes) -> Result<T, StageError> {
    F::decode(payload).map_err(|e| StageError::invalid_input(decode_failed::<F>("the payload", &e)))
}

/// Encode a stage output in `F`.
fn encode<F: Encode<T>, T>(output: T, what: &str) -> Result<Bytes, StageError> {
    F::encode(output).map_err(|_| StageError::invalid_output(encode_failed::<F>(what)))
}

const OUTPUT: &str = "the stage output";

/// A stage hosted as it is (`stage_as`), its payloads in `F`.
struct AsIs<S, F>(S, PhantomData<fn() -> F>);

#[async_trait]
impl<S, F> ErasedStage for AsIs<S, F>
where
    S: Stage,
    F: Decode<S::Input> + Encode<S::Output>,
{
    async fn run(&self, payload: Bytes, ctx: &RequestContext) -> Result<Bytes, StageError> {
        let input = decode::<F, _>(payload)?;
        encode::<F, _>(self.0.run(input, ctx).await?, OUTPUT)
    }
}

/// A stage hosted in its instrumentation layer (`stage`): one stage span
/// under the SERVER span. Payloads in `F`.
struct Layered<S: Stage, F>(Instrumented<S>, PhantomData<fn() -> F>);

#[async_trait]
impl<S, F> ErasedStage for Layered<S, F>
where
    S: Stage,
    F: Decode<S::Input> + Encode<S::Output>,
{
    async fn run(&self, payload: Bytes, ctx: &RequestContext) -> Result<Bytes, StageError> {
        let input = decode::<F, _>(payload)?;
        encode::<F, _>(self.0.call(input, ctx).await?, OUTPUT)
    }
}

/// A registered stage and its name as a span attribute (built once).
#[derive(Clone)]
struct Hosted<T: ?Sized> {
    stage: Arc<T>,
    attribute: KeyValue,
}

impl<T: ?Sized> Hosted<T> {
    fn new(name: &str, stage: Arc<T>) -> Self {
        Hosted {
            stage,
            attribute: KeyValue::new(rpc::WORKER_STAGE, Value::from(Arc::<str>::from(name))),
        }
    }
}

struct JsonStream<F, I>(F, PhantomData<fn(I)>);

impl<F, I, O, St> ErasedStream for JsonStream<F, I>
where
    F: Fn(I, RequestContext) -> St + Send + Sync,
    I: DeserializeOwned,
    O: Serialize,
    St: Stream<Item = Result<O, StageError>> + Send + 'static,
{
    fn open(&self, payload: Bytes, ctx: RequestContext) -> Result<ByteStream, StageError> {
        let input: I = decode::<Json, _>(payload)?;
        Ok(Box::pin((self.0)(input, ctx).map(|item| {
            item.and_then(|o| encode::<Json, _>(o, "a streamed item"))
        })))
    }
}

/// A worker process's stages, served over gRPC.
///
/// ```no_run
/// # use spanline_core::{stage_fn, StageDescriptor, StageKind, StageError, Telemetry};
/// # use spanline_grpc::Worker;
/// # async fn demo() -> Result<(), spanline_grpc::GrpcError> {
/// let upper = stage_fn(StageDescriptor::new("upper", StageKind::Custom), |s: String, _ctx| async move {
///     Ok::<_, StageError>(s.to_uppercase())
/// });
/// let worker = Worker::builder(Telemetry::global()).stage(upper).build();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// worker.serve(listener, std::future::pending()).await
/// # }
/// ```
#[derive(Clone)]
pub struct Worker {
    stages: Arc<HashMap<String, Hosted<dyn ErasedStage>>>,
    streams: Arc<HashMap<String, Hosted<dyn ErasedStream>>>,
    layer: ServerTraceLayer,
    max_message_size: usize,
    drain_timeout: Duration,
}

/// How long [`Worker::serve`] lets calls in flight finish after shutdown
/// unless [`WorkerBuilder::drain_timeout`] says otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("stages", &self.stages.keys().collect::<Vec<_>>())
            .field("streams", &self.streams.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    telemetry: Telemetry,
    edge: EdgeMode,
    stages: HashMap<String, Hosted<dyn ErasedStage>>,
    streams: HashMap<String, Hosted<dyn ErasedStream>>,
    max_message_size: usize,
    drain_timeout: Duration,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder").finish_non_exhaustive()
    }
}

impl Worker {
    /// Start building a worker that emits through `telemetry`.
    pub fn builder(telemetry: Telemetry) -> WorkerBuilder {
        WorkerBuilder {
            telemetry,
            edge: EdgeMode::Trusted,
            stages: HashMap::new(),
            streams: HashMap::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }

    /// The tonic service (for mounting on your own `Server`; add
    /// [`Worker::layer`] to it as well).
    pub fn into_service(self) -> StageWorkerServer<Worker> {
        let size = self.max_message_size;
        StageWorkerServer::new(self)
            .max_decoding_message_size(size)
            .max_encoding_message_size(size)
    }

    /// The server layer this worker was built with.
    pub fn layer(&self) -> ServerTraceLayer {
        self.layer.clone()
    }

    /// Serve on `listener` until `shutdown` completes, then drain calls in
    /// flight for at most the drain timeout ([`WorkerBuilder::drain_timeout`],
    /// default [`DEFAULT_DRAIN_TIMEOUT`]); past it every connection is closed
    /// and what was still running is cancelled. Without the deadline a
    /// client that holds a connection open (or a call that never ends) would
    /// keep `serve` from returning for ever. Accepted connections get
    /// `TCP_NODELAY`.
    ///
    /// The connections are tied to this future: dropping it (or aborting
    /// the task running it) closes every connection it accepted at once, so
    /// callers see the connection drop (`UNAVAILABLE`, and a pool fails over)
    /// and the calls in flight are cancelled on the worker. tonic runs each
    /// connection in its own task, which would otherwise outlive the server.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GrpcError> {
        let layer = self.layer();
        let alive = CancellationToken::new();
        // Cancels every accepted connection when this future is dropped
        // (after a graceful shutdown they are already closed).
        let _tie = alive.clone().drop_guard();
        let incoming = futures_util::stream::unfold(listener, move |listener| {
            let alive = alive.clone();
            async move {
                let next = listener.accept().await.map(|(stream, _)| {
                    // serve_with_incoming ignores Server::tcp_nodelay.
                    let _ = stream.set_nodelay(true);
                    Tied::new(stream, alive)
                });
                Some((next, listener))
            }
        });
        let drain = self.drain_timeout;
        let (began, draining) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = began.send(());
        };
        let server = tonic::transport::Server::builder()
            .layer(layer)
            .add_service(self.into_service())
            .serve_with_incoming_shutdown(incoming, shutdown);
        let deadline = async move {
            match draining.await {
                // A documented wait, not work: the drain deadline itself.
                Ok(()) => tokio::time::sleep(drain).await,
                // The server ended on its own: no deadline to keep.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            served = server => served.map_err(GrpcError::Transport),
            // Returning drops the server and, through `_tie`, closes every
            // connection it still holds.
            () = deadline => Ok(()),
        }
    }
}

/// An accepted connection that fails its reads and writes once the server
/// that accepted it is gone (hyper then drops it, closing the socket).
struct Tied {
    io: TcpStream,
    gone: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Tied {
    fn new(io: TcpStream, alive: CancellationToken) -> Self {
        Tied {
            io,
            gone: Box::pin(alive.cancelled_owned()),
        }
    }

    /// Registers the waker; an error once the server is gone.
    fn check(&mut self, cx: &mut Context<'_>) -> Result<(), std::io::Error> {
        match self.gone.as_mut().poll(cx) {
            Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the worker stopped",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Tied {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tied {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connected for Tied {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl WorkerBuilder {
    /// Host `stage` under its descriptor's name, instrumented: each call
    /// gets one stage span, a child of the SERVER span, with the stage
    /// histograms (labelled `pipeline` = `stage` = the stage's name), as
    /// step 0 of a pipeline of that name would; no pipeline root span.
    /// The request deadline applies. Registers the histograms with the
    /// current `metrics` recorder.
    pub fn stage<S>(self, stage: S) -> Self
    where
        S: Stage + 'static,
        S::Input: DeserializeOwned,
        S::Output: Serialize,
    {
        self.stage_in(Json, stage)
    }

    /// [`WorkerBuilder::stage`] with its payloads in `format` (for
    /// example [`Raw`](crate::wire::Raw) bytes); callers must use the same
    /// format ([`WorkerChannel::stage_in`](crate::WorkerChannel::stage_in)).
    pub fn stage_in<S, F>(mut self, _format: F, stage: S) -> Self
    where
        S: Stage + 'static,
        F: Decode<S::Input> + Encode<S::Output>,
    {
        let name = stage.describe().name;
        let step = Instrumented::standalone(stage, name.clone(), self.telemetry.clone());
        let hosted: Hosted<dyn ErasedStage> =
            Hosted::new(&name, Arc::new(Layered::<S, F>(step, PhantomData)));
        self.stages.insert(name.into_owned(), hosted);
        self
    }

    /// Host `stage` under `name` as it is (no extra instrumentation: use
    /// this for a [`Pipeline`](spanline_core::Pipeline), which instruments
    /// itself), its payloads JSON.
    pub fn stage_as<S>(self, name: impl Into<String>, stage: S) -> Self
    where
        S: Stage + 'static,
        S::Input: DeserializeOwned,
        S::Output: Serialize,
    {
        self.stage_as_in(Json, name, stage)
    }

    /// [`WorkerBuilder::stage_as`] with its payloads in `format`.
    pub fn stage_as_in<S, F>(mut self, _format: F, name: impl Into<String>, stage: S) -> Self
    where
        S: Stage + 'static,
        F: Decode<S::Input> + Encode<S::Output>,
    {
        let name = name.into();
        let hosted: Hosted<dyn ErasedStage> =
            Hosted::new(&name, Arc::new(AsIs::<S, F>(stage, PhantomData)));
        self.stages.insert(name, hosted);
        self
    }

    /// Host a streaming stage (served by `Generate`): `open` turns an input
    /// and the request context into a stream of items.
    pub fn stream<I, O, F, St>(mut self, name: impl Into<String>, open: F) -> Self
    where
        F: Fn(I, RequestContext) -> St + Send + Sync + 'static,
        I: DeserializeOwned + 'static,
        O: Serialize + 'static,
        St: Stream<Item = Result<O, StageError>> + Send + 'static,
    {
        let name = name.into();
        let hosted: Hosted<dyn ErasedStream> =
            Hosted::new(&name, Arc::new(JsonStream(open, PhantomData)));
        self.streams.insert(name, hosted);
        self
    }

    /// The trust mode of the server layer (default [`EdgeMode::Trusted`]).
    pub fn edge(mut self, edge: EdgeMode) -> Self {
        self.edge = edge;
        self
    }

    /// The largest message accepted or sent (default 4 MiB). A larger
    /// request is refused with `OUT_OF_RANGE` before the stage runs.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// After shutdown, let calls in flight finish for at most `timeout`
    /// (default [`DEFAULT_DRAIN_TIMEOUT`]); then [`Worker::serve`] closes
    /// the connections and returns.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Build (registers histograms with the current `metrics` recorder).
    pub fn build(self) -> Worker {
        Worker {
            layer: ServerTraceLayer::builder(self.telemetry)
                .edge(self.edge)
                .build(),
            stages: Arc::new(self.stages),
            streams: Arc::new(self.streams),
            max_message_size: self.max_message_size,
            drain_timeout: self.drain_timeout,
        }
    }
}

/// The request context the server layer left in the extensions (taken, not
/// cloned), or one extracted from the metadata without the layer.
fn take_context<T>(request: Request<T>) -> (RequestContext, T) {
    let (metadata, mut extensions, message) = request.into_parts();
    let ctx = match extensions.remove::<RequestContext>() {
        Some(ctx) => ctx,
        None => crate::carrier::extract_metadata(&metadata).into_context(),
    };
    (ctx, message)
}

fn unknown_stage(name: &str) -> Status {
    Status::not_found(format!(
        "no stage named `{}` on this worker",
        truncate(name, 64).escape_default()
    ))
}

#[async_trait]
impl StageWorker for Worker {
    async fn run(&self, request: Request<RunRequest>) -> Result<Response<RunResponse>, Status> {
        let (ctx, req) = take_context(request);
        let capture = ctx.captures_content();
        let Some(hosted) = self.stages.get(&req.stage) else {
            return Err(unknown_stage(&req.stage));
        };
        ctx.set_attribute(hosted.attribute.clone());
        if ctx.is_expired() {
            return Err(to_status(&StageError::deadline_exceeded(), capture));
        }
        match hosted.stage.run(req.payload, &ctx).await {
            Ok(payload) => Ok(Response::new(RunResponse { payload })),
            Err(e) => Err(to_status(&e, capture)),
        }
    }

    type GenerateStream =
        Pin<Box<dyn Stream<Item = Result<GenerateChunk, Status>> + Send + 'static>>;

    async fn generate(
        &self,
        request: Request<RunRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        let (ctx, req) = take_context(request);
        let capture = ctx.captures_content();
        let Some(hosted) = self.streams.get(&req.stage) else {
            return Err(unknown_stage(&req.stage));
        };
        ctx.set_attribute(hosted.attribute.clone());
        let items = hosted
            .stage
            .open(req.payload, ctx)
            .map_err(|e| to_status(&e, capture))?;
        Ok(Response::new(Box::pin(items.map(move |item| match item {
            Ok(payload) => Ok(GenerateChunk { payload }),
            Err(e) => Err(to_status(&e, capture)),
        }))))
    }
}
