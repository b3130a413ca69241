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
use serde::Serialize;
use serde::de::DeserializeOwned;
use spanline_core::semconv::{rpc, spanline};
use spanline_core::{RequestContext, Stage, StageDescriptor, StageError, Telemetry};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::GrpcError;
use crate::client::ClientTraceLayer;
use crate::proto::RunRequest;
use crate::proto::stage_worker_client::StageWorkerClient;
use crate::status::from_status;
use crate::worker::{DEFAULT_MAX_MESSAGE_SIZE, decode};

/// The boxed, traced transport a remote stage calls through: one endpoint
/// ([`WorkerChannel::connect_lazy`]) or a balanced pool
/// ([`WorkerPool`](crate::WorkerPool)).
/// Its error is a `Status` (a transport failure is `UNAVAILABLE`), not a
/// boxed error: the generated client's `Into<StdError>` bound on a boxed
/// error defeats the `Send` proof of `async_trait` futures.
pub(crate) type Transport = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Status>;

/// A transport error as a status: a `Status` already inside is kept,
/// anything else (connection refused or lost) is `UNAVAILABLE`, with a
/// content-free message.
pub(crate) fn transport_status(error: BoxError) -> Status {
    match error.downcast::<Status>() {
        Ok(status) => *status,
        Err(_) => Status::unavailable("worker unreachable"),
    }
}

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

pub(crate) fn traced(channel: Channel, layer: ClientTraceLayer) -> Transport {
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(channel)
        .map_response(|r: http::Response<_>| r.map(Body::new))
        .map_err(|e| transport_status(e.into()));
    BoxCloneSyncService::new(svc)
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
            transport: traced(endpoint.connect_lazy(), layer),
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

    /// A remote stage: `descriptor.name` is the worker-side stage name
    /// (override with [`RemoteStage::worker_stage`]). The descriptor is
    /// marked remote (`.server(..)` for a single worker), so the pipeline's
    /// stage span is a CLIENT span.
    pub fn stage<I, O>(&self, descriptor: StageDescriptor) -> RemoteStage<I, O> {
        let descriptor = match &self.server {
            Some((host, port)) => descriptor.server(host.clone(), *port),
            None => descriptor.remote(),
        };
        let client = StageWorkerClient::new(self.transport.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size);
        RemoteStage {
            inner: Arc::new(RemoteInner {
                worker_stage: descriptor.name.clone(),
                descriptor,
                client,
                failover: self.failover.clone(),
                max_message_size: self.max_message_size,
            }),
            _types: PhantomData,
        }
    }
}

type RunFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<tonic::Response<crate::proto::RunResponse>, Status>>
            + Send,
    >,
>;

/// Boxed outside the `async_trait` body: proving the generated client's
/// future `Send` inside it trips a higher-ranked lifetime limitation.
fn call_run(
    mut client: StageWorkerClient<Transport>,
    request: tonic::Request<RunRequest>,
) -> RunFuture {
    Box::pin(async move { client.run(request).await })
}

struct RemoteInner {
    descriptor: StageDescriptor,
    worker_stage: Cow<'static, str>,
    client: StageWorkerClient<Transport>,
    failover: Failover,
    max_message_size: usize,
}

/// A stage that runs on a worker. Inputs and outputs travel as JSON; the
/// request context travels in the metadata (through the client layer); the
/// remaining deadline travels as `grpc-timeout` and is enforced here too.
pub struct RemoteStage<I, O> {
    inner: Arc<RemoteInner>,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O> Clone for RemoteStage<I, O> {
    fn clone(&self) -> Self {
        RemoteStage {
            inner: self.inner.clone(),
            _types: PhantomData,
        }
    }
}

impl<I, O> std::fmt::Debug for RemoteStage<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStage")
            .field("descriptor", &self.inner.descriptor)
            .field("worker_stage", &self.inner.worker_stage)
            .finish()
    }
}

impl<I, O> RemoteStage<I, O> {
    /// Call the worker-side stage registered as `name` (by default the
    /// descriptor's name).
    pub fn worker_stage(self, name: impl Into<Cow<'static, str>>) -> Self {
        let inner = RemoteInner {
            descriptor: self.inner.descriptor.clone(),
            worker_stage: name.into(),
            client: self.inner.client.clone(),
            failover: self.inner.failover.clone(),
            max_message_size: self.inner.max_message_size,
        };
        RemoteStage {
            inner: Arc::new(inner),
            _types: PhantomData,
        }
    }
}

impl<I: Serialize, O> RemoteStage<I, O> {
    fn encode(&self, input: &I) -> Result<Bytes, StageError> {
        let payload = serde_json::to_vec(input)
            .map_err(|_| StageError::invalid_input("the input cannot be encoded as JSON"))?;
        if payload.len() > self.inner.max_message_size {
            return Err(StageError::invalid_input(format!(
                "the encoded input is {} bytes; the limit is {} bytes",
                payload.len(),
                self.inner.max_message_size
            )));
        }
        Ok(payload.into())
    }

    fn request(&self, payload: Bytes, ctx: &RequestContext) -> tonic::Request<RunRequest> {
        let mut request = tonic::Request::new(RunRequest {
            stage: self.inner.worker_stage.to_string(),
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
    ) -> Result<impl Stream<Item = Result<O, StageError>> + Send + 'static + use<I, O>, StageError>
    where
        O: DeserializeOwned + Send + 'static,
    {
        if ctx.is_expired() {
            return Err(StageError::deadline_exceeded());
        }
        let payload = self.encode(&input)?;
        let request = self.request(payload, ctx);
        let mut client = self.inner.client.clone();
        let response = client
            .generate(request)
            .await
            .map_err(|s| self.error(&s, ctx))?;
        let stage = self.inner.worker_stage.clone();
        let capture = ctx.captures_content();
        Ok(response.into_inner().map(move |item| match item {
            Ok(chunk) => decode(&chunk.payload, "a streamed item"),
            Err(status) => Err(from_status(&status, &stage, capture)),
        }))
    }
}

#[async_trait]
impl<I, O> Stage for RemoteStage<I, O>
where
    I: Serialize + Send + Sync + 'static,
    O: DeserializeOwned + Send + 'static,
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
        let payload = self.encode(&input)?;
        let mut attempt = 1;
        loop {
            let call = call_run(
                self.inner.client.clone(),
                self.request(payload.clone(), ctx),
            );
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
                    return decode(&response.into_inner().payload, "the worker's response")
                        .map_err(|e| StageError::invalid_output(e.message().to_owned()));
                }
                Err(status) if self.retry(&status, attempt, ctx) => attempt += 1,
                Err(status) => return Err(self.error(&status, ctx)),
            }
        }
    }
}

impl<I, O> RemoteStage<I, O>
where
    I: Serialize + Send + Sync + 'static,
    O: DeserializeOwned + Send + 'static,
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
