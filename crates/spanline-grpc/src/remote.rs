//! The client side of a remote stage: a [`Stage`] whose work runs on a
//! worker, so a pipeline cannot tell it from a local one.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanBuilder;
use spanline_core::semconv::{rpc, spanline};
use spanline_core::{RequestContext, Stage, StageDescriptor, StageError, Telemetry};
use tonic::client::Grpc;
use tonic::transport::Endpoint;
use tonic::{Code, Status};
use tower::retry::budget::{Budget, TpsBudget};

use crate::GrpcError;
use crate::client::ClientTraceLayer;
use crate::proto::{GenerateChunk, RunResponse};
use crate::status::from_status;
use crate::transport::{
    RunCall, Transport, WorkerCodec, generate_path, run_path, stage_field, traced,
};
use crate::wire::{Decode, Encode, Json, WireFormat, decode_failed, encode_failed};
use crate::worker::DEFAULT_MAX_MESSAGE_SIZE;

/// How a remote call fails over to another worker.
#[derive(Clone, Debug)]
pub(crate) struct Failover {
    pub(crate) max_attempts: usize,
    pub(crate) budget: Option<Arc<TpsBudget>>,
}

/// A traced connection to one worker or a pool of workers.
#[derive(Clone)]
pub struct WorkerChannel {
    pub(crate) transport: Transport,
    pub(crate) server: Option<(String, u16)>,
    pub(crate) failover: Failover,
    pub(crate) max_message_size: usize,
}

impl std::fmt::Debug for WorkerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerChannel")
            .field("server", &self.server)
            .field("failover", &self.failover)
            .finish_non_exhaustive()
    }
}

pub(crate) fn host_port(endpoint: &Endpoint) -> (String, u16) {
    let uri = endpoint.uri();
    let host = uri.host().unwrap_or("").trim_matches(['[', ']']).to_owned();
    let port = uri.port_u16().unwrap_or(80);
    (host, port)
}

/// How a connection notices that its worker is gone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Liveness {
    pub(crate) connect_timeout: Duration,
    pub(crate) keep_alive_interval: Option<Duration>,
    pub(crate) keep_alive_timeout: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            connect_timeout: Duration::from_secs(2),
            keep_alive_interval: Some(Duration::from_secs(10)),
            keep_alive_timeout: Duration::from_secs(10),
        }
    }
}

/// An endpoint with `TCP_NODELAY`, a connect timeout, TCP keepalive, and
/// HTTP/2 keepalive pings while calls are in flight (a worker whose host
/// vanished without closing the connection is detected within
/// interval + timeout, and its calls fail `UNAVAILABLE`).
pub(crate) fn endpoint(uri: &str, liveness: Liveness) -> Result<Endpoint, GrpcError> {
    let endpoint = Endpoint::from_shared(uri.to_owned())
        .map_err(|_| GrpcError::InvalidEndpoint(uri.to_owned()))?
        .tcp_nodelay(true)
        .connect_timeout(liveness.connect_timeout)
        .tcp_keepalive(Some(Duration::from_secs(30)));
    Ok(match liveness.keep_alive_interval {
        Some(interval) => endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(liveness.keep_alive_timeout)
            .keep_alive_while_idle(false),
        None => endpoint,
    })
}

impl WorkerChannel {
    /// A traced channel to the worker at `uri` (`http://host:port`),
    /// connecting on first use. The CLIENT spans carry `server.address` and
    /// `server.port` from the URI. Connection settings are
    /// [`PoolConfig`](crate::PoolConfig)'s defaults (2 s connect timeout,
    /// HTTP/2 keepalive pings every 10 s during calls, 10 s ping timeout).
    pub fn connect_lazy(uri: &str, telemetry: Telemetry) -> Result<Self, GrpcError> {
        let endpoint = endpoint(uri, Liveness::default())?;
        let (host, port) = host_port(&endpoint);
        let layer = ClientTraceLayer::builder(telemetry)
            .server(host.clone(), port)
            .build();
        Ok(WorkerChannel {
            transport: Transport::Single(traced(endpoint.connect_lazy(), &layer)),
            server: Some((host, port)),
            failover: Failover {
                max_attempts: 1,
                budget: None,
            },
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        })
    }

    /// The largest request or response message (default 4 MiB). A larger
    /// input fails with an `InvalidInput` error before anything is sent.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// A remote stage whose input and output travel as JSON:
    /// `descriptor.name` is the worker-side stage name (override with
    /// [`RemoteStage::worker_stage`]). The descriptor is marked remote
    /// (`.server(..)` for a single worker), so the pipeline's stage span is
    /// a CLIENT span.
    pub fn stage<I, O>(&self, descriptor: StageDescriptor) -> RemoteStage<I, O> {
        self.stage_in(Json, descriptor)
    }

    /// A remote stage whose input and output travel in `format` (for
    /// example [`Raw`](crate::wire::Raw) bytes, with no encoding on either
    /// side); the worker must host the stage in the same format
    /// ([`WorkerBuilder::stage_in`](crate::WorkerBuilder::stage_in)).
    pub fn stage_in<I, O, F: WireFormat>(
        &self,
        _format: F,
        descriptor: StageDescriptor,
    ) -> RemoteStage<I, O, F> {
        let descriptor = match &self.server {
            Some((host, port)) => descriptor.server(host.clone(), *port),
            None => descriptor.remote(),
        };
        let grpc = Grpc::new(self.transport.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size);
        RemoteStage {
            inner: Arc::new(RemoteInner {
                stage_field: stage_field(&descriptor.name),
                worker_stage: descriptor.name.clone(),
                descriptor,
                grpc,
                failover: self.failover.clone(),
                max_message_size: self.max_message_size,
            }),
            _types: PhantomData,
        }
    }
}

/// One `Run` call: no boxing beyond the `Stage` trait's own (the transport
/// is unboxed for a single endpoint, the request is pre-encoded).
async fn call_run(
    mut grpc: Grpc<Transport>,
    request: tonic::Request<RunCall>,
) -> Result<tonic::Response<RunResponse>, Status> {
    grpc.ready().await?;
    grpc.unary(request, run_path(), WorkerCodec::default())
        .await
}

struct RemoteInner {
    descriptor: StageDescriptor,
    worker_stage: Cow<'static, str>,
    /// `RunRequest.stage`, encoded once.
    stage_field: Bytes,
    grpc: Grpc<Transport>,
    failover: Failover,
    max_message_size: usize,
}

/// A stage that runs on a worker. Inputs and outputs travel in the wire
/// format `F` (JSON by default, see [`wire`](crate::wire)); the request
/// context travels in the metadata (through the client layer); the
/// remaining deadline travels as `grpc-timeout` and is enforced here too.
pub struct RemoteStage<I, O, F = Json> {
    inner: Arc<RemoteInner>,
    _types: PhantomData<fn(I, F) -> O>,
}

impl<I, O, F> Clone for RemoteStage<I, O, F> {
    fn clone(&self) -> Self {
        RemoteStage {
            inner: self.inner.clone(),
            _types: PhantomData,
        }
    }
}

impl<I, O, F> std::fmt::Debug for RemoteStage<I, O, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStage")
            .field("descriptor", &self.inner.descriptor)
            .field("worker_stage", &self.inner.worker_stage)
            .finish()
    }
}

impl<I, O, F> RemoteStage<I, O, F> {
    /// Call the worker-side stage registered as `name` (by default the
    /// descriptor's name).
    pub fn worker_stage(self, name: impl Into<Cow<'static, str>>) -> Self {
        let worker_stage = name.into();
        let inner = RemoteInner {
            descriptor: self.inner.descriptor.clone(),
            stage_field: stage_field(&worker_stage),
            worker_stage,
            grpc: self.inner.grpc.clone(),
            failover: self.inner.failover.clone(),
            max_message_size: self.inner.max_message_size,
        };
        RemoteStage {
            inner: Arc::new(inner),
            _types: PhantomData,
        }
    }
}

impl<I, O, F: Encode<I>> RemoteStage<I, O, F> {
    fn encode(&self, input: I) -> Result<Bytes, StageError> {
        let payload = F::encode(input)
            .map_err(|_| StageError::invalid_input(encode_failed::<F>("the input")))?;
        if payload.len() > self.inner.max_message_size {
            return Err(StageError::invalid_input(format!(
                "the encoded input is {} bytes; the limit is {} bytes",
                payload.len(),
                self.inner.max_message_size
            )));
        }
        Ok(payload)
    }

    fn request(&self, payload: Bytes, ctx: &RequestContext) -> tonic::Request<RunCall> {
        let mut request = tonic::Request::new(RunCall {
            stage_field: self.inner.stage_field.clone(),
            payload,
        });
        request.extensions_mut().insert(ctx.clone());
        request
    }

    fn error(&self, status: &Status, ctx: &RequestContext) -> StageError {
        if ctx.is_expired() {
            return StageError::deadline_exceeded();
        }
        from_status(status, &self.inner.worker_stage, ctx.captures_content())
    }

    /// Whether to try another worker after `status` (attempt `attempt`).
    fn retry(&self, status: &Status, attempt: usize, ctx: &RequestContext) -> bool {
        let f = &self.inner.failover;
        if status.code() != Code::Unavailable || attempt >= f.max_attempts || ctx.is_expired() {
            return false;
        }
        let allowed = f.budget.as_ref().is_none_or(|b| b.withdraw());
        let reason = if allowed {
            rpc::REASON_UNAVAILABLE
        } else {
            rpc::REASON_BUDGET_EXHAUSTED
        };
        metrics::counter!(rpc::POOL_RETRIES, spanline_core::semconv::metric::LABEL_REASON => reason)
            .increment(1);
        allowed
    }

    /// Open a streaming call (`Generate`) on the worker-side streaming
    /// stage, yielding decoded items. Dropping the stream cancels the
    /// worker's work.
    pub async fn stream(
        &self,
        input: I,
        ctx: &RequestContext,
    ) -> Result<impl Stream<Item = Result<O, StageError>> + Send + 'static + use<I, O, F>, StageError>
    where
        O: Send + 'static,
        F: Decode<O>,
    {
        if ctx.is_expired() {
            return Err(StageError::deadline_exceeded());
        }
        let payload = self.encode(input)?;
        let request = self.request(payload, ctx);
        let mut grpc = self.inner.grpc.clone();
        grpc.ready().await.map_err(|s| self.error(&s, ctx))?;
        let response = grpc
            .server_streaming(
                request,
                generate_path(),
                WorkerCodec::<GenerateChunk>::default(),
            )
            .await
            .map_err(|s| self.error(&s, ctx))?;
        let stage = self.inner.worker_stage.clone();
        let capture = ctx.captures_content();
        Ok(response.into_inner().map(move |item| match item {
            Ok(chunk) => F::decode(chunk.payload)
                .map_err(|e| StageError::invalid_output(decode_failed::<F>("a streamed item", &e))),
            Err(status) => Err(from_status(&status, &stage, capture)),
        }))
    }
}

#[async_trait]
impl<I, O, F> Stage for RemoteStage<I, O, F>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
    F: Encode<I> + Decode<O>,
{
    type Input = I;
    type Output = O;

    fn describe(&self) -> StageDescriptor {
        self.inner.descriptor.clone()
    }

    async fn run(&self, input: I, ctx: &RequestContext) -> Result<O, StageError> {
        if ctx.is_expired() {
            return Err(StageError::deadline_exceeded());
        }
        let payload = self.encode(input)?;
        let mut attempt = 1;
        loop {
            let call = call_run(self.inner.grpc.clone(), self.request(payload.clone(), ctx));
            let result = match ctx.remaining() {
                Some(left) => match tokio::time::timeout(left, call).await {
                    Ok(r) => r,
                    Err(_) => return Err(StageError::deadline_exceeded()),
                },
                None => call.await,
            };
            match result {
                Ok(response) => {
                    if let Some(b) = &self.inner.failover.budget {
                        b.deposit();
                    }
                    return F::decode(response.into_inner().payload).map_err(|e| {
                        StageError::invalid_output(decode_failed::<F>("the worker's response", &e))
                    });
                }
                Err(status) if self.retry(&status, attempt, ctx) => attempt += 1,
                Err(status) => return Err(self.error(&status, ctx)),
            }
        }
    }
}

impl<I, O, F> RemoteStage<I, O, F>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
    F: Encode<I> + Decode<O>,
{
    /// Run every input on the workers in parallel, one task per item. Each
    /// task carries its own context explicitly: a per-item span (the stage
    /// span of item `i`, with `spanline.batch.index/size/concurrency`)
    /// under `ctx`'s span, whose CLIENT call span is its child. Results come
    /// back in input order.
    pub async fn fan_out(
        &self,
        telemetry: &Telemetry,
        inputs: Vec<I>,
        ctx: &RequestContext,
    ) -> Vec<Result<O, StageError>> {
        let size = inputs.len() as i64;
        let name = self.inner.descriptor.span_name();
        let tasks: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| {
                let builder = SpanBuilder::from_name(name.clone())
                    .with_kind(opentelemetry::trace::SpanKind::Client)
                    .with_attributes(vec![
                        KeyValue::new(spanline::STAGE_NAME, self.inner.descriptor.name.to_string()),
                        KeyValue::new(spanline::STAGE_KIND, self.inner.descriptor.kind.as_str()),
                        KeyValue::new(spanline::BATCH_INDEX, i as i64),
                        KeyValue::new(spanline::BATCH_SIZE, size),
                        KeyValue::new(spanline::BATCH_CONCURRENCY, size),
                        KeyValue::new(spanline::STEP_BLOCKING, true),
                    ]);
                let item_ctx = ctx.start_span(telemetry, builder);
                let stage = self.clone();
                item_ctx.spawn(move |item_ctx| async move {
                    let result = stage.run(input, &item_ctx).await;
                    if let Err(e) = &result {
                        item_ctx.record_error(e);
                    }
                    item_ctx.end_span();
                    result
                })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(match task.await {
                Ok(r) => r,
                Err(_) => Err(StageError::internal("a fan-out task panicked")),
            });
        }
        out
    }
}
