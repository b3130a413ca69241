//! A pool of workers behind tower's power-of-two-choices balancer.
//!
//! Each endpoint is a lazily connected tonic channel wrapped in the client
//! layer (so every attempt has its own CLIENT span with the real
//! `server.address`), a pending-request load measure, and an ejector: a
//! transport failure (connection refused, connection lost mid-call) takes
//! the endpoint out of rotation for a back-off period, and the remote stage
//! retries the call on another worker (`UNAVAILABLE` only; at most
//! `max_attempts` tries, optionally within a retry budget). When every
//! endpoint is ejected, calls go through anyway and fail fast rather than
//! wait.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use spanline_core::semconv::rpc;
use spanline_core::{StageDescriptor, Telemetry};
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tonic::transport::Channel;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, Load, PendingRequests};
use tower::retry::budget::TpsBudget;
use tower::{Service, ServiceExt};

use crate::GrpcError;
use crate::client::ClientTrace;
use crate::client::ClientTraceLayer;
use crate::remote::{Failover, Liveness, RemoteStage, WorkerChannel, endpoint, host_port};
use crate::transport::{PoolTransport, TracedHttpResponse, Transport, traced, transport_status};
use crate::worker::DEFAULT_MAX_MESSAGE_SIZE;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// How long an endpoint stays out of rotation after a transport failure.
    pub ejection: Duration,
    /// Tries per call, counting the first (default: the number of endpoints).
    pub max_attempts: Option<usize>,
    /// An optional retry budget: `(ttl, min_per_sec, retry_percent)` as in
    /// `tower::retry::budget::TpsBudget::new`.
    pub retry_budget: Option<(Duration, u32, f32)>,
    /// Requests queued in front of the balancer.
    pub buffer: usize,
    /// The largest message (default 4 MiB).
    pub max_message_size: usize,
    /// How long connecting to a worker may take (default 2 s); a timeout
    /// fails the attempt `UNAVAILABLE` and ejects the endpoint.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive pings while calls are in flight (default every
    /// 10 s; `None` disables them). They detect a worker whose host vanished
    /// without closing the connection (no FIN or RST ever arrives).
    pub keep_alive_interval: Option<Duration>,
    /// How long a keepalive ping may go unanswered before the connection is
    /// closed and its calls fail `UNAVAILABLE` (default 10 s).
    pub keep_alive_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            ejection: Duration::from_secs(5),
            max_attempts: None,
            retry_budget: None,
            buffer: 1024,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: Liveness::default().connect_timeout,
            keep_alive_interval: Liveness::default().keep_alive_interval,
            keep_alive_timeout: Liveness::default().keep_alive_timeout,
        }
    }
}

#[derive(Debug)]
struct Shared {
    total: usize,
    ejected: AtomicUsize,
}

/// One endpoint: ejected for a while after a transport failure.
struct Ejecting {
    inner: PendingRequests<ClientTrace<Channel>, CompleteOnResponse>,
    until: Arc<Mutex<Option<Instant>>>,
    sleep: Option<Pin<Box<Sleep>>>,
    backoff: Duration,
    shared: Arc<Shared>,
}

impl Ejecting {
    /// Whether the endpoint is out of rotation now (clears an expired
    /// ejection).
    fn ejected_until(&self) -> Option<Instant> {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        match *until {
            Some(t) if Instant::now() < t => Some(t),
            Some(_) => {
                *until = None;
                self.shared.ejected.fetch_sub(1, Ordering::Relaxed);
                None
            }
            None => None,
        }
    }
}

fn eject(until: &Mutex<Option<Instant>>, backoff: Duration, shared: &Shared) {
    let mut until = until.lock().unwrap_or_else(|p| p.into_inner());
    if until.is_none() {
        shared.ejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(rpc::POOL_EJECTIONS).increment(1);
    }
    *until = Some(Instant::now() + backoff);
}

impl Service<http::Request<tonic::body::Body>> for Ejecting {
    type Response = TracedHttpResponse;
    type Error = Status;
    type Future = BoxFuture<'static, Result<Self::Response, Status>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        if let Some(t) = self.ejected_until() {
            let everyone_down = self.shared.ejected.load(Ordering::Relaxed) >= self.shared.total;
            if !everyone_down {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(t)));
                sleep.as_mut().reset(t);
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(_)) => {
                // Never report an error to the balancer (it would drop the
                // endpoint for good): eject and come back later.
                eject(&self.until, self.backoff, &self.shared);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let until = self.until.clone();
        let shared = self.shared.clone();
        let backoff = self.backoff;
        self.inner
            .call(req)
            .map(move |r| {
                r.map_err(|e| transport_status(e.into()))
                    .inspect_err(|status| {
                        if status.code() == tonic::Code::Unavailable {
                            eject(&until, backoff, &shared);
                        }
                    })
            })
            .boxed()
    }
}

impl Load for Ejecting {
    type Metric = <PendingRequests<ClientTrace<Channel>, CompleteOnResponse> as Load>::Metric;
    fn load(&self) -> Self::Metric {
        self.inner.load()
    }
}

/// Several workers hosting the same stages, balanced with tower's p2c.
#[derive(Clone, Debug)]
pub struct WorkerPool {
    channel: WorkerChannel,
    endpoints: Vec<(String, u16)>,
}

impl WorkerPool {
    /// A pool over `uris` (`http://host:port` each), connecting lazily.
    /// Must be called inside a tokio runtime (the balancer runs as a task).
    pub fn new<U: AsRef<str>>(
        uris: impl IntoIterator<Item = U>,
        telemetry: Telemetry,
        config: PoolConfig,
    ) -> Result<Self, GrpcError> {
        let mut services = Vec::new();
        let mut endpoints = Vec::new();
        let uris: Vec<String> = uris.into_iter().map(|u| u.as_ref().to_owned()).collect();
        if uris.is_empty() {
            return Err(GrpcError::NoEndpoints);
        }
        let shared = Arc::new(Shared {
            total: uris.len(),
            ejected: AtomicUsize::new(0),
        });
        let liveness = Liveness {
            connect_timeout: config.connect_timeout,
            keep_alive_interval: config.keep_alive_interval,
            keep_alive_timeout: config.keep_alive_timeout,
        };
        for uri in &uris {
            let endpoint = endpoint(uri, liveness)?;
            let (host, port) = host_port(&endpoint);
            let layer = ClientTraceLayer::builder(telemetry.clone())
                .server(host.clone(), port)
                .build();
            let transport = traced(endpoint.connect_lazy(), &layer);
            services.push(Ejecting {
                inner: PendingRequests::new(transport, CompleteOnResponse::default()),
                until: Arc::new(Mutex::new(None)),
                sleep: None,
                backoff: config.ejection,
                shared: shared.clone(),
            });
            endpoints.push((host, port));
        }
        let balance = Balance::new(ServiceList::new(services));
        let buffer = Buffer::new(balance, config.buffer.max(1));
        let transport = Transport::Pool(PoolTransport::new(buffer.map_err(transport_status)));
        let budget = config
            .retry_budget
            .map(|(ttl, min, pct)| Arc::new(TpsBudget::new(ttl, min, pct)));
        Ok(WorkerPool {
            channel: WorkerChannel {
                transport,
                server: None,
                failover: Failover {
                    max_attempts: config.max_attempts.unwrap_or(uris.len()).max(1),
                    budget,
                },
                max_message_size: config.max_message_size,
            },
            endpoints,
        })
    }

    /// The endpoints, as `(host, port)`.
    pub fn endpoints(&self) -> &[(String, u16)] {
        &self.endpoints
    }

    /// A remote stage calling through the pool (descriptor marked remote).
    pub fn stage<I, O>(&self, descriptor: StageDescriptor) -> RemoteStage<I, O> {
        self.channel.stage(descriptor)
    }
}
